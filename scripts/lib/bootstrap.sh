# Sourced by scripts/*: cd to the repo root, make sure uv exists, sync the locked env.
# Works on a fresh machine with only Python 3.11+ and pip access to PyPI.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"

# uv installed by an earlier run of this script lives in a private venv here.
KONVO_TOOLS="$REPO_ROOT/.konvo/tools"

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11+ is required to install uv (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_uv() {
    if command -v uv >/dev/null 2>&1; then
        return 0
    fi
    local dir
    for dir in "$HOME/.local/bin" "$KONVO_TOOLS/bin"; do
        if [ -x "$dir/uv" ]; then
            export PATH="$dir:$PATH"
            return 0
        fi
    done
    local py
    py="$(find_python)"
    echo "uv not found; installing it from PyPI into $KONVO_TOOLS" >&2
    # A private venv avoids PEP 668 "externally managed" refusals of `pip install --user`.
    if "$py" -m venv "$KONVO_TOOLS" >/dev/null 2>&1 \
        && "$KONVO_TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check uv; then
        export PATH="$KONVO_TOOLS/bin:$PATH"
    else
        rm -rf "$KONVO_TOOLS"
        echo "venv unavailable; trying: $py -m pip install --user uv" >&2
        "$py" -m pip install --quiet --user uv
        export PATH="$HOME/.local/bin:$PATH"
    fi
    command -v uv >/dev/null 2>&1 || { echo "error: uv installation failed" >&2; return 1; }
}

# Trust the system CA store (needed behind TLS-inspecting proxies; harmless elsewhere).
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"
ensure_uv
uv sync --locked --quiet
