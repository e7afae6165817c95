# The test command of README.md. As root it first installs the programs the
# namespace tests drive (scripts/test-deps); outside root those tests skip.
.PHONY: test test-deps build lint fuzz bench bench-smoke bench-oracle bench-bypass soak demo

build:
	go build -o bin/tcpchaos ./cmd/tcpchaos

# The built-in scenario in throwaway namespaces (needs root). On a fresh
# machine it installs ip and iptables first.
demo: build
	@scripts/test-deps iptables:iptables ip:iproute2
	bin/tcpchaos demo

test: test-deps
	go test -race -count=1 ./...

test-deps:
	@scripts/test-deps

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

# The suite is built into bin/bench and run from there, not with go run,
# which would turn its exit status 3 (a target missed) into 1.
BENCH = go build -o bin/bench ./bench && bin/bench

# The benchmark suite (README "Benchmarks"; root): live columns in network
# namespaces, offline Go benchmarks and replay; report in bin/bench.md.
bench:
	$(BENCH)

# The conntrack oracle workload alone (README "Benchmarks"; root):
# 10,000 connections compared with nf_conntrack's event stream.
bench-oracle:
	$(BENCH) -live=false -offline=false -out bin/bench-oracle.md

# The quiet bypass's cost per data packet, xt connmark match against a
# native nft rule (README "Benchmarks"; root; scripts/bench-bypass):
# ROUNDS rounds of one bulk connection per variant, perf when installed.
ROUNDS ?= 7
bench-bypass:
	ROUNDS=$(ROUNDS) scripts/bench-bypass

# The soak workload alone (README "Benchmarks"; root): SOAK of steady
# traffic, reloads and rule toggles through one tcpchaos; it fails when a
# series grows without bound or a packet is left without a verdict.
# Report in bin/soak.md. CI runs it for 45s (.ci/run).
SOAK ?= 10m
soak:
	$(BENCH) -soak $(SOAK) -out bin/soak.md

# CI-sized run of the suite: one short round, asserts only that it completes.
bench-smoke:
	$(BENCH) -smoke -out ''
