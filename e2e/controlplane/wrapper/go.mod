// Writes and checks the build wrappers of ../v<release> (see main.go).
module mtls-operator.local/e2e/controlplane/wrapper

go 1.26.0

require golang.org/x/mod v0.43.0
