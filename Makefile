# The test command of README.md. Namespace tests need root; elsewhere they skip.
.PHONY: test build lint fuzz bench bench-smoke demo

build:
	go build -o bin/tcpchaos ./cmd/tcpchaos

# The built-in scenario in throwaway namespaces (needs root). On a fresh
# machine it installs ip and iptables first.
demo: build
	@if ! command -v iptables >/dev/null || ! command -v ip >/dev/null; then \
	  apt-get update && apt-get install -y iptables iproute2; \
	fi
	bin/tcpchaos demo

test:
	go test -race -count=1 ./...

lint:
	go vet ./...
	go tool staticcheck ./...
	GOOS=darwin go vet ./cmd/tcpchaos # replay and validate build beyond Linux
	test -z "$$(gofmt -l .)"

# Short fuzzing of each fuzz target (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# The benchmark suite (README "Benchmarks"; root): live columns in network
# namespaces, offline Go benchmarks and replay; report in bin/bench.md.
bench:
	go run ./bench

# CI-sized run of the suite: one short round, asserts only that it completes.
bench-smoke:
	go run ./bench -smoke -out ''
