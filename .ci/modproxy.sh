#!/usr/bin/env bash
# Proves that the modules resolve once tagged. It builds a local module proxy
# (a folder for GOPROXY=file://...) from the working tree, holding the root
# module and redisstore at the newest version of CHANGELOG.md, then, in a
# fresh module outside the repository, runs `go get .../redisstore@VERSION`
# alone and builds a program that uses it. Everything else (go-redis, ...)
# comes from the local module cache or the real proxy. It fails when a
# module requires the root module at another version, such as the
# pseudo-version v0.0.0-00010101000000-000000000000 that no proxy serves.
#
#   bash .ci/modproxy.sh
#
# It writes only to a temporary folder, with a module cache of its own, so
# that the versions it makes up never reach the real module cache.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=github.com/autorefresh/autorefresh

fail() {
	echo "modproxy.sh: FAIL: $*" >&2
	exit 1
}

version=v$(sed -n 's/^## \[\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\)\].*/\1/p' "$repo/CHANGELOG.md" | head -n 1)
[[ $version != v ]] || fail "CHANGELOG.md has no version heading such as '## [0.1.0] - 2026-01-31'"

# The flags of the caller (.ci/run sets -count=1) are not for these commands.
export GOFLAGS=-modcacherw GOWORK=off

for m in redisstore bench; do
	got=$(cd "$repo/$m" && go list -m -f '{{.Version}}' "$root")
	[[ $got == "$version" ]] ||
		fail "$m/go.mod requires $root $got; want $version (CHANGELOG.md), with the replace directive kept for development"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cache=$(go env GOMODCACHE)/cache/download

(cd "$repo/.ci/modproxy" && go run . -version "$version" -out "$tmp/proxy" "$repo" "$repo/redisstore")

mkdir "$tmp/app"
cd "$tmp/app"
cat >main.go <<'EOF'
package main

import (
	"fmt"

	"github.com/autorefresh/autorefresh"
	"github.com/autorefresh/autorefresh/redisstore"
	"github.com/redis/go-redis/v9"
)

func main() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	client := autorefresh.NewClient(nil, &autorefresh.Transport{
		Store:     redisstore.New(rdb, "app:tokens"),
		Refresher: &autorefresh.Endpoint{URL: "https://api.example.com/auth/refreshtoken"},
	})
	fmt.Println(client.Transport != nil)
}
EOF
export GOMODCACHE=$tmp/modcache
export GOPROXY="file://$tmp/proxy,file://$cache,https://proxy.golang.org"
export GONOSUMDB=$root
out=$(go mod init example.com/app 2>&1) || fail "go mod init: $out"
go get "$root/redisstore@$version" || fail "go get $root/redisstore@$version from a proxy holding both modules at $version"
got=$(go list -m -f '{{.Version}}' "$root")
[[ $got == "$version" ]] || fail "the new module got $root $got; want $version"
go build -trimpath -o /dev/null . || fail "a program using redisstore@$version does not build"
echo "modproxy.sh: ok: go get $root/redisstore@$version alone resolves $root@$version, and a program using it builds"
