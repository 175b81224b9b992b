# Azurite (Azure Blob emulator) for the azblob backend tests, sourced by .ci/run.
# azurite@3.35.0 is the newest release that runs on Node 20 (3.37 needs Node 22); it goes into a
# folder of its own, never the repository. Quick and silent when it is already there.
azurite_dir="$HOME/.cache/bkcache/azurite"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "ci: installing npm (for Azurite)"
    apt_update_once
    apt-get install -y -q --no-install-recommends nodejs npm
  fi
  echo "ci: installing azurite@3.35.0 into $azurite_dir"
  mkdir -p "$azurite_dir"
  npm install --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error azurite@3.35.0
fi
