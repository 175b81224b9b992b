# S3 test server: moto_server (PyPI moto[server]) in a venv of its own.
# Sourced by .ci/run under `set -euo pipefail`; idempotent and quick when moto is already there.
# xtask (servers_s3.rs) looks for "$HOME/.cache/bkcache/moto-venv/bin/moto_server".
moto_venv="$HOME/.cache/bkcache/moto-venv"
moto_version="5.2.5"
if [ -x "$moto_venv/bin/moto_server" ] \
  && "$moto_venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$moto_version')" 2>/dev/null; then
  echo "ci: moto $moto_version already in $moto_venv"
else
  echo "ci: installing moto[server]==$moto_version into $moto_venv"
  rm -rf "$moto_venv"
  mkdir -p "$(dirname "$moto_venv")"
  # Debian's python3 needs python3-venv (ensurepip) to make a venv.
  if ! python3 -m venv "$moto_venv" >/dev/null 2>&1; then
    rm -rf "$moto_venv"
    echo "ci: installing python3-venv"
    apt_update_once
    apt-get install -y -q --no-install-recommends python3-venv
    python3 -m venv "$moto_venv"
  fi
  "$moto_venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
  "$moto_venv/bin/moto_server" --help >/dev/null
fi
unset moto_venv moto_version
