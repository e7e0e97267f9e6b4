# Fulcrum developer commands. Each target is a plain go command; the README
# lists the two that matter on a fresh machine.

GO ?= go
PKGS := ./...

.PHONY: build test race lint fuzz bench run

build:
	$(GO) build -o bin/fulcrum ./cmd/fulcrum

# The README's test command: every test, with the race detector.
test:
	$(GO) test -race -count=1 $(PKGS)

race: test

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

# Each fuzzer for a short while (CI does the same).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 20s ./internal/resp
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime 20s ./internal/httpapi

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

run: build
	./bin/fulcrum server
