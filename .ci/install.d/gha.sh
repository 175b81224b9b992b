# GitHub Actions cache tests: the official client, npm @actions/cache@6.3.0, checks the project's
# GHA cache test server (xtask gha-server) from the outside; it shells out to tar and zstd.
# Sourced by .ci/run under `set -euo pipefail`; idempotent and quick when everything is there.
# crates/cli/tests/gha.rs looks for "$HOME/.cache/bkcache/actions-cache/node_modules/@actions/cache".
gha_client_dir="$HOME/.cache/bkcache/actions-cache"
gha_client_version="6.3.0"
gha_need=()
command -v tar >/dev/null 2>&1 || gha_need+=(tar)
command -v zstd >/dev/null 2>&1 || gha_need+=(zstd)
command -v npm >/dev/null 2>&1 || gha_need+=(nodejs npm)
if [ "${#gha_need[@]}" -gt 0 ]; then
  echo "ci: installing ${gha_need[*]} (for the @actions/cache check)"
  apt_update_once
  apt-get install -y -q --no-install-recommends "${gha_need[@]}"
fi
if [ -f "$gha_client_dir/node_modules/@actions/cache/package.json" ] \
  && node -e "process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)" \
    "$gha_client_dir/node_modules/@actions/cache/package.json" "$gha_client_version" 2>/dev/null; then
  echo "ci: @actions/cache $gha_client_version already in $gha_client_dir"
else
  echo "ci: installing @actions/cache@$gha_client_version into $gha_client_dir"
  mkdir -p "$gha_client_dir"
  npm install --prefix "$gha_client_dir" --no-audit --no-fund --loglevel=error "@actions/cache@$gha_client_version"
fi
unset gha_client_dir gha_client_version gha_need
