package main

import (
	"os"
	"strings"
	"testing"
)

// TestRun runs the Quick start program. It exits the test binary through
// log.Fatal if any step fails.
func TestRun(t *testing.T) {
	main()
}

// TestREADMEQuickStart checks that the Go code of the README's Quick start is
// this program, so that what a reader pastes compiles and runs.
func TestREADMEQuickStart(t *testing.T) {
	got := readmeBlock(t, "go")
	want, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("README.md's Quick start Go code differs from examples/quickstart/main.go; make them equal\nREADME:\n%s\nmain.go:\n%s", got, want)
	}
}

// TestREADMETestCommand checks that the test command of the README's Quick
// start is what .ci/run runs.
func TestREADMETestCommand(t *testing.T) {
	var command string
	for line := range strings.Lines(readmeBlock(t, "sh")) {
		if strings.HasPrefix(line, "go test ") {
			command, _, _ = strings.Cut(line, "#")
			command = strings.TrimSpace(command)
		}
	}
	if command == "" {
		t.Fatal(`README.md's Quick start has no "go test" command`)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(ci)) {
		if strings.TrimSpace(line) == command {
			return
		}
	}
	t.Errorf(".ci/run has no line that is the README's test command\n\t%s", command)
}

// readmeBlock returns the first code block of the given language in the
// Quick start section of README.md.
func readmeBlock(t *testing.T, lang string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Quick start\n")
	if !ok {
		t.Fatal(`README.md has no "## Quick start" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "\n```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md's Quick start has no %s code block", lang)
	}
	block, _, ok = strings.Cut(block, "\n```\n")
	if !ok {
		t.Fatalf("README.md's Quick start %s code block does not end", lang)
	}
	return block + "\n"
}
