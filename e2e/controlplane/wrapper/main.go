// Command wrapper writes the build wrapper module of one Kubernetes release: the go.mod that
// e2e/controlplane/build.sh builds etcd, kube-apiserver and kube-controller-manager from.
//
//	cd e2e/controlplane/wrapper && go run . 1.38.0   # writes ../v1.38.0/go.mod; then in ../v1.38.0: go mod tidy -e
//
// k8s.io/kubernetes is published as a Go module whose go.mod requires its staging modules
// (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces them by ./staging/src/...; neither
// resolves outside its own repository. The wrapper requires k8s.io/kubernetes at the release and
// replaces every staging module by its published v0.<minor>.<patch>. The list of staging modules
// is read from that release's own go.mod, so the wrapper follows it when a release adds or drops one.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// Tools are the packages a wrapper builds (go.mod tool directives: `go build tool` builds them all).
var Tools = []string{
	"go.etcd.io/etcd/server/v3",
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
}

// StagingVersion is the version Kubernetes publishes its staging modules at for a release:
// v1.Y.Z -> v0.Y.Z.
func StagingVersion(release string) (string, error) {
	if !semver.IsValid(release) || semver.Major(release) != "v1" || semver.Prerelease(release) != "" {
		return "", fmt.Errorf("%q is not a Kubernetes release such as v1.37.2", release)
	}
	return "v0" + strings.TrimPrefix(release, "v1"), nil
}

// StagingModules are the modules the release's go.mod replaces by a folder under ./staging.
func StagingModules(kubernetesGoMod []byte) ([]string, error) {
	file, err := modfile.Parse("go.mod", kubernetesGoMod, nil)
	if err != nil {
		return nil, err
	}
	var modules []string
	for _, replace := range file.Replace {
		if strings.HasPrefix(replace.New.Path, "./staging/") {
			modules = append(modules, replace.Old.Path)
		}
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("no staging module replaced in that go.mod: is it k8s.io/kubernetes's?")
	}
	return modules, nil
}

// Wrapper is the wrapper's go.mod for a release whose own go.mod is kubernetesGoMod. etcd is
// added at the version the release requires (its go.mod pins go.etcd.io/etcd/server/v3).
func Wrapper(release string, kubernetesGoMod []byte) ([]byte, error) {
	staging, err := StagingVersion(release)
	if err != nil {
		return nil, err
	}
	modules, err := StagingModules(kubernetesGoMod)
	if err != nil {
		return nil, err
	}
	kubernetes, err := modfile.Parse("go.mod", kubernetesGoMod, nil)
	if err != nil {
		return nil, err
	}
	etcd := ""
	for _, require := range kubernetes.Require {
		if require.Mod.Path == "go.etcd.io/etcd/server/v3" {
			etcd = require.Mod.Version
		}
	}
	if etcd == "" {
		return nil, fmt.Errorf("kubernetes %s does not require go.etcd.io/etcd/server/v3", release)
	}
	file := new(modfile.File)
	steps := []error{
		file.AddModuleStmt("mtls-operator.local/e2e/controlplane/" + release),
		file.AddGoStmt("1.26"),
		file.AddRequire("k8s.io/kubernetes", release),
		file.AddRequire("go.etcd.io/etcd/server/v3", etcd),
	}
	for _, module := range modules {
		steps = append(steps, file.AddReplace(module, "", module, staging))
	}
	for _, tool := range Tools {
		steps = append(steps, file.AddTool(tool))
	}
	for _, step := range steps {
		if step != nil {
			return nil, step
		}
	}
	file.Cleanup()
	return modfile.Format(file.Syntax), nil
}

// kubernetesGoMod downloads the release's go.mod through the module proxy (go mod download).
func kubernetesGoMod(release string) ([]byte, error) {
	out, err := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+release).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w", release, err)
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, err
	}
	return os.ReadFile(info.GoMod)
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: go run . <kubernetes release, e.g. 1.37.2>")
	}
	release := "v" + strings.TrimPrefix(args[0], "v")
	goMod, err := kubernetesGoMod(release)
	if err != nil {
		return err
	}
	wrapper, err := Wrapper(release, goMod)
	if err != nil {
		return err
	}
	folder := filepath.Join("..", release)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return err
	}
	path := filepath.Join(folder, "go.mod")
	if err := os.WriteFile(path, wrapper, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s; now: cd %s && go mod tidy -e\n", path, folder)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "wrapper:", err)
		os.Exit(1)
	}
}
