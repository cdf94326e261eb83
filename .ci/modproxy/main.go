// Command modproxy writes a module proxy folder, in the layout that
// GOPROXY=file://FOLDER reads, holding the modules of the given folders at
// one version, as if that version had been tagged for each of them:
//
//	go run . -version v0.1.0 -out /tmp/proxy ../.. ../../redisstore
//
// A module's zip holds the files of its folder that git tracks or would
// track (untracked files that .gitignore does not exclude), less those of
// nested modules, as the proxy would serve them from the tag. The .mod file
// is the folder's go.mod, the .info file gives the current time.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/zip"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("modproxy: ")
	version := flag.String("version", "", "the version to give every module, such as v0.1.0")
	out := flag.String("out", "", "the proxy folder to write")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		log.Fatal("usage: modproxy -version vX.Y.Z -out FOLDER MODULE_FOLDER...")
	}
	if !semver.IsValid(*version) || semver.Canonical(*version) != *version {
		log.Fatalf("-version %q is not a canonical semantic version such as v0.1.0", *version)
	}
	for _, dir := range flag.Args() {
		path, err := add(*out, dir, *version)
		if err != nil {
			log.Fatalf("%s: %v", dir, err)
		}
		fmt.Printf("modproxy: %s@%s from %s\n", path, *version, dir)
	}
}

// add writes the list, .info, .mod and .zip files of the module in dir at
// version under out, and returns the module's path.
func add(out, dir, version string) (string, error) {
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	path := modfile.ModulePath(gomod)
	if path == "" {
		return "", errors.New("go.mod names no module")
	}
	m := module.Version{Path: path, Version: version}
	if err := module.Check(path, version); err != nil {
		return "", err
	}
	escPath, err := module.EscapePath(path)
	if err != nil {
		return "", err
	}
	escVersion, err := module.EscapeVersion(version)
	if err != nil {
		return "", err
	}
	vdir := filepath.Join(out, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return "", err
	}
	files, err := moduleFiles(dir)
	if err != nil {
		return "", err
	}
	var z bytes.Buffer
	if err := zip.Create(&z, m, files); err != nil {
		return "", err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{
		"list":               []byte(version + "\n"),
		escVersion + ".info": info,
		escVersion + ".mod":  gomod,
		escVersion + ".zip":  z.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	return path, nil
}

// moduleFiles lists the files under dir that git tracks or would track.
// zip.Create leaves out those of nested modules.
func moduleFiles(dir string) ([]zip.File, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	list, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	var files []zip.File
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		f := dirFile{dir: dir, name: name}
		if _, err := f.Lstat(); errors.Is(err, fs.ErrNotExist) {
			continue // tracked, but deleted in the working tree
		}
		files = append(files, f)
	}
	return files, nil
}

// dirFile is a file of a module folder, named by its slash-separated path
// relative to that folder.
type dirFile struct{ dir, name string }

func (f dirFile) Path() string                 { return f.name }
func (f dirFile) Lstat() (fs.FileInfo, error)  { return os.Lstat(f.osPath()) }
func (f dirFile) Open() (io.ReadCloser, error) { return os.Open(f.osPath()) }
func (f dirFile) osPath() string               { return filepath.Join(f.dir, filepath.FromSlash(f.name)) }
