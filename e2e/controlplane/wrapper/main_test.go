package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

func TestStagingVersion(t *testing.T) {
	for release, want := range map[string]string{"v1.37.2": "v0.37.2", "v1.29.6": "v0.29.6"} {
		got, err := StagingVersion(release)
		if err != nil || got != want {
			t.Errorf("StagingVersion(%q) = %q, %v; want %q", release, got, err, want)
		}
	}
	for _, bad := range []string{"1.37.2", "v0.37.2", "v1.38.0-beta.0", "latest"} {
		if _, err := StagingVersion(bad); err == nil {
			t.Errorf("StagingVersion(%q) accepted a version that is not a Kubernetes release", bad)
		}
	}
}

const releaseGoMod = `module k8s.io/kubernetes

go 1.25.0

require (
	go.etcd.io/etcd/server/v3 v3.7.0 // indirect
	k8s.io/api v0.0.0
	k8s.io/apiserver v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apiserver => ./staging/src/k8s.io/apiserver
	github.com/example/fork => github.com/example/fork v1.2.3
)
`

func TestWrapperReplacesEveryStagingModule(t *testing.T) {
	out, err := Wrapper("v1.37.2", []byte(releaseGoMod))
	if err != nil {
		t.Fatal(err)
	}
	file, err := modfile.Parse("go.mod", out, nil)
	if err != nil {
		t.Fatalf("the wrapper is not a valid go.mod: %v\n%s", err, out)
	}
	replaced := map[string]string{}
	for _, replace := range file.Replace {
		replaced[replace.Old.Path] = replace.New.Path + "@" + replace.New.Version
	}
	want := map[string]string{
		"k8s.io/api":       "k8s.io/api@v0.37.2",
		"k8s.io/apiserver": "k8s.io/apiserver@v0.37.2",
	}
	if len(replaced) != len(want) {
		t.Errorf("replaces %v, want %v", replaced, want)
	}
	for module, target := range want {
		if replaced[module] != target {
			t.Errorf("%s => %s, want %s", module, replaced[module], target)
		}
	}
	requires := map[string]string{}
	for _, require := range file.Require {
		requires[require.Mod.Path] = require.Mod.Version
	}
	if requires["k8s.io/kubernetes"] != "v1.37.2" || requires["go.etcd.io/etcd/server/v3"] != "v3.7.0" {
		t.Errorf("requires %v, want k8s.io/kubernetes v1.37.2 and etcd v3.7.0", requires)
	}
	if _, err := Wrapper("v1.37.2", []byte("module k8s.io/kubernetes\n")); err == nil {
		t.Error("a go.mod without staging modules was accepted")
	}
}

// Every committed wrapper (../v<release>/go.mod) replaces exactly its release's staging modules, at
// the release's staging version, and builds the tools build.sh expects.
func TestCommittedWrappers(t *testing.T) {
	folders, err := filepath.Glob(filepath.Join("..", "v1.*"))
	if err != nil || len(folders) == 0 {
		t.Fatalf("no wrapper under ../v1.*: %v", err)
	}
	for _, folder := range folders {
		release := filepath.Base(folder)
		t.Run(release, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(folder, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			committed, err := modfile.Parse("go.mod", data, nil)
			if err != nil {
				t.Fatal(err)
			}
			goMod, err := kubernetesGoMod(release)
			if err != nil {
				t.Fatal(err)
			}
			generated, err := Wrapper(release, goMod)
			if err != nil {
				t.Fatal(err)
			}
			want, err := modfile.Parse("go.mod", generated, nil)
			if err != nil {
				t.Fatal(err)
			}
			if committed.Module.Mod.Path != want.Module.Mod.Path {
				t.Errorf("module %s, want %s", committed.Module.Mod.Path, want.Module.Mod.Path)
			}
			if got, exp := replaces(committed), replaces(want); !slices.Equal(got, exp) {
				t.Errorf("replaces\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
			}
			for _, require := range want.Require {
				if !slices.ContainsFunc(committed.Require, func(r *modfile.Require) bool { return r.Mod == require.Mod }) {
					t.Errorf("does not require %s", require.Mod)
				}
			}
			var tools []string
			for _, tool := range committed.Tool {
				tools = append(tools, tool.Path)
			}
			slices.Sort(tools)
			if !slices.Equal(tools, Tools) {
				t.Errorf("tools %v, want %v", tools, Tools)
			}
		})
	}
}

func replaces(file *modfile.File) []string {
	var out []string
	for _, replace := range file.Replace {
		out = append(out, replace.Old.Path+" => "+replace.New.Path+" "+replace.New.Version)
	}
	slices.Sort(out)
	return out
}
