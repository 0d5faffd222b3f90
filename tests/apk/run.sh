#!/usr/bin/env bash
# Tests the APKBUILDs in apk/ without abuild (not available outside Alpine).
#
# Builds the release binaries, then, for each APKBUILD, does what abuild does
# around package() and the split functions: sets abuild's variables, defines
# abuild's helpers (amove and the default doc/openrc/completion splits, which
# an APKBUILD may override), sources the APKBUILD, runs package() in
# $builddir and each subpackage's split function in $pkgdir, and compares
# every resulting tree (paths and modes) with the expected one. $builddir is
# the repository itself, as the release tarball `ntari-services-<ver>.tar.gz`
# unpacks to it (docs/packaging.md). It also checks the metadata, the checksum
# block, and that prepare/build/check hold the cargo commands aports use
# (those three are not run: they need the network, or run the whole build).
#
#   bash tests/apk/run.sh            # CI calls it like this
#   bash tests/apk/run.sh ntari-dns  # only these packages
#
# Exit status 0 only if every check of every package passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
umask 022 # as abuild

PACKAGES=(ntari-ntp ntari-dns ntari-dhcp ntari-vpn ntari-federation ntari-identity ntari-files ntari-admin)
if [ $# -gt 0 ]; then PACKAGES=("$@"); fi
# Every package is built from the one workspace tarball.
PROJECT=ntari-services

# --locked: `cargo fetch --locked` in prepare() fails the same way if
# Cargo.lock is not up to date.
# What is tested here is the packages' layout, not the optimiser: the
# release build skips fat LTO (abuild's own build keeps the workspace
# profile), which saves minutes of the suite on a 2-core machine.
echo "== cargo build --release --locked ${PACKAGES[*]/#/-p } (without LTO)"
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	cargo build --release --locked "${PACKAGES[@]/#/-p}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- what the workspace says ------------------------------------------------

workspace_field() { # [workspace.package] key
	sed -n '/^\[workspace\.package\]/,/^\[/{s/^'"$1"' *= *"\(.*\)"$/\1/p}' Cargo.toml
}
WS_VERSION=$(workspace_field version)
WS_LICENSE=$(workspace_field license)
WS_REPOSITORY=$(workspace_field repository)

# --- the expected packages ----------------------------------------------------

# expected <package> <what>: what = depends | makedepends | subpackages |
# tree:<(sub)package> | depends:<subpackage> | install_if:<subpackage>
expected() {
	local p=$1 what=$2 v="$WS_VERSION-r0"
	case "$what" in
	makedepends) echo "cargo cargo-auditable clang-dev cmake linux-headers" ;;
	subpackages)
		case $p in
		ntari-admin) echo "$p-doc $p-openrc $p-bash-completion $p-zsh-completion $p-fish-completion" ;;
		*) echo "$p-doc $p-openrc" ;;
		esac ;;
	depends)
		case $p in
		ntari-ntp) echo "chrony" ;;
		ntari-dns) echo "dnsmasq" ;;
		ntari-dhcp) echo "kea-dhcp4 kea-hook-lease-cmds" ;;
		# boringtun is built in; wireguard-go is optional
		# nftables: what a relaying hub filters forwarded traffic with
		ntari-vpn) echo "wireguard-tools iproute2 nftables" ;;
		# its federation domain runs over ntari-vpn's WireGuard interface
		ntari-federation) echo "ntari-vpn" ;;
		# MIT krb5 with its LDAP module, OpenLDAP with the mdb and monitor
		# backends; clients, openssl and setpriv for the first configure
		ntari-identity) echo "krb5-server krb5-server-ldap openldap openldap-back-mdb openldap-back-monitor openldap-clients openssl util-linux-misc" ;;
		# smbd and smbstatus; testparm, pdbedit, smbcontrol, smbpasswd;
		# the kernel's NFS server (Alpine has no NFS-Ganesha)
		ntari-files) echo "samba-server samba-common-tools nfs-utils" ;;
		ntari-admin) echo "" ;;
		esac ;;
	depends:$p-openrc)
		# every ntari-<service> init script `need`s ntari-domain, which
		# ntari-admin-openrc ships and which runs ntari-admin
		case $p in
		ntari-admin) echo "ntari-admin=$v" ;;
		# ntari-federation's script also `need`s ntari-vpn
		ntari-federation) echo "ntari-admin-openrc ntari-vpn-openrc" ;;
		*) echo "ntari-admin-openrc" ;;
		esac ;;
	depends:*) echo "" ;;
	install_if:$p-doc) echo "docs $p=$v" ;;
	install_if:$p-openrc) echo "openrc $p=$v" ;;
	install_if:$p-bash-completion) echo "$p=$v bash-completion" ;;
	install_if:$p-zsh-completion) echo "$p=$v zsh" ;;
	install_if:$p-fish-completion) echo "$p=$v fish" ;;
	tree:*) expected_tree "$p" "${what#tree:}" ;;
	*) echo "expected: nothing known about $p $what" >&2; return 1 ;;
	esac
}

# expected_tree <package> <(sub)package>: `find -printf "%m %P"`, in any order
expected_tree() {
	local p=$1 name=$2 svc=${1#ntari-}
	case "$p:$name" in
	ntari-admin:ntari-admin)
		cat <<-EOF
		755 usr
		755 usr/bin
		755 usr/bin/ntari-admin
		EOF
		;;
	ntari-admin:ntari-admin-doc)
		cat <<-EOF
		755 usr
		755 usr/share
		755 usr/share/man
		755 usr/share/man/man1
		644 usr/share/man/man1/ntari-admin.1.gz
		EOF
		;;
	ntari-admin:ntari-admin-openrc)
		cat <<-EOF
		755 etc
		755 etc/conf.d
		644 etc/conf.d/ntari-domain
		755 etc/init.d
		755 etc/init.d/ntari-domain
		EOF
		;;
	ntari-admin:ntari-admin-bash-completion)
		cat <<-EOF
		755 usr
		755 usr/share
		755 usr/share/bash-completion
		755 usr/share/bash-completion/completions
		644 usr/share/bash-completion/completions/ntari-admin
		EOF
		;;
	ntari-admin:ntari-admin-zsh-completion)
		cat <<-EOF
		755 usr
		755 usr/share
		755 usr/share/zsh
		755 usr/share/zsh/site-functions
		644 usr/share/zsh/site-functions/_ntari-admin
		EOF
		;;
	ntari-admin:ntari-admin-fish-completion)
		cat <<-EOF
		755 usr
		755 usr/share
		755 usr/share/fish
		755 usr/share/fish/vendor_completions.d
		644 usr/share/fish/vendor_completions.d/ntari-admin.fish
		EOF
		;;
	ntari-federation:ntari-federation) # also its agreements and state dirs
		cat <<-EOF
		755 etc
		755 etc/ntari
		755 etc/ntari/federation
		755 usr
		755 usr/bin
		755 usr/bin/$p
		755 var
		755 var/lib
		755 var/lib/ntari
		700 var/lib/ntari/federation
		EOF
		;;
	"$p:$p") # a service: ntari-ntp, ntari-dns, ntari-dhcp, ntari-vpn, ntari-identity, ntari-files
		cat <<-EOF
		755 usr
		755 usr/bin
		755 usr/bin/$p
		EOF
		;;
	"$p:$p-doc")
		cat <<-EOF
		755 usr
		755 usr/share
		755 usr/share/doc
		755 usr/share/doc/$p
		644 usr/share/doc/$p/$svc.md
		644 usr/share/doc/$p/$svc.toml.example
		EOF
		;;
	"$p:$p-openrc")
		cat <<-EOF
		755 etc
		755 etc/conf.d
		644 etc/conf.d/$p
		755 etc/init.d
		755 etc/init.d/$p
		EOF
		;;
	*) echo "expected_tree: nothing known about $name of $p" >&2; return 1 ;;
	esac
}

# expected_same <package> <(sub)package>: "installed-path source-path" pairs
# whose contents must be identical.
expected_same() {
	local p=$1 name=$2 svc=${1#ntari-}
	case "$p:$name" in
	"$p:$p") echo "usr/bin/$p target/release/$p" ;;
	ntari-admin:ntari-admin-openrc)
		echo "etc/init.d/ntari-domain openrc/ntari-domain.initd"
		echo "etc/conf.d/ntari-domain openrc/ntari-domain.confd"
		;;
	ntari-admin:*) ;;
	ntari-federation:ntari-federation-doc)
		echo "usr/share/doc/$p/$svc.md docs/services/$svc.md"
		echo "usr/share/doc/$p/$svc.toml.example examples/federation/hub-a/$svc.toml"
		;;
	"$p:$p-doc")
		echo "usr/share/doc/$p/$svc.md docs/services/$svc.md"
		echo "usr/share/doc/$p/$svc.toml.example examples/$svc.toml"
		;;
	"$p:$p-openrc")
		echo "etc/init.d/$p openrc/$p.initd"
		echo "etc/conf.d/$p openrc/$p.confd"
		;;
	esac
}

# --- abuild's side ------------------------------------------------------------
# Re-implemented from abuild's documented behaviour (abuild.in): what an
# APKBUILD may call, defined before the APKBUILD is sourced so that its own
# definitions win, as with abuild.

msg() { echo "  >>> ${subpkgname:-$pkgname}: $*"; }
msg2() { echo "      $*"; }
warning() { echo "  >>> WARNING: ${subpkgname:-$pkgname}: $*" >&2; }
error() { echo "  >>> ERROR: ${subpkgname:-$pkgname}: $*" >&2; }

# amove <path>...: move paths (relative to $pkgdir) into $subpkgdir, keeping
# their place in the tree; parents left empty in $pkgdir are removed.
amove() {
	[ -n "${subpkgdir:-}" ] || { error "amove outside a split function"; return 1; }
	local oldpwd=$PWD ret=0 path parent
	cd "$pkgdir"
	for path in "$@"; do
		while [ "${path#/}" != "$path" ]; do path=${path#/}; done
		while [ "${path%/}" != "$path" ]; do path=${path%/}; done
		if [ ! -e "$path" ] && [ ! -L "$path" ]; then
			ret=1
			continue
		fi
		parent=$(dirname "$path")
		mkdir -p "$subpkgdir/$parent"
		mv "$path" "$subpkgdir/$parent/"
		[ "$parent" = . ] || rmdir -p "$parent" 2>/dev/null || :
	done
	cd "$oldpwd"
	return $ret
}

default_prepare() {
	mkdir -p "$tmpdir"
	cd "$builddir"
	local s
	for s in $source; do
		case ${s%%::*} in
		*.patch | *.patch.gz | *.patch.xz) error "patches are not applied by this test: $s"; return 1 ;;
		esac
	done
}
prepare() { default_prepare; }
build() { :; }

default_doc() {
	depends="${depends_doc:-}"
	pkgdesc="$pkgdesc (documentation)"
	install_if="docs $pkgname=$pkgver-r$pkgrel"
	local d
	for d in doc man info html sgml licenses gtk-doc ri help; do
		amove usr/share/"$d" || :
	done
	# man pages are shipped compressed
	if [ -d "$subpkgdir"/usr/share/man ]; then
		find "$subpkgdir"/usr/share/man -type f \( -name '*.[0-9n]' -o -name '*.[0-9n][a-z]*' \) \
			! -name '*.gz' ! -name '*.bz2' ! -name '*.xz' -exec gzip -n -9 {} +
	fi
	rm -f "$subpkgdir"/usr/share/info/dir
}
doc() { default_doc; }

default_openrc() {
	depends="${depends_openrc:-}"
	pkgdesc="$pkgdesc (OpenRC init scripts)"
	install_if="openrc ${subpkgname%-openrc}=$pkgver-r$pkgrel"
	amove etc/conf.d etc/init.d etc/user/conf.d etc/user/init.d || :
}
openrc() { default_openrc; }

default_bashcomp() {
	depends=""
	pkgdesc="Bash completions for $pkgname"
	install_if="${subpkgname%-bash-completion}=$pkgver-r$pkgrel bash-completion"
	amove usr/share/bash-completion/completions
}
bashcomp() { default_bashcomp; }

default_zshcomp() {
	depends=""
	pkgdesc="Zsh completions for $pkgname"
	install_if="${subpkgname%-zsh-completion}=$pkgver-r$pkgrel zsh"
	amove usr/share/zsh/site-functions
}
zshcomp() { default_zshcomp; }

default_fishcomp() {
	depends=""
	pkgdesc="Fish completions for $pkgname"
	install_if="${subpkgname%-fish-completion}=$pkgver-r$pkgrel fish"
	amove usr/share/fish/vendor_completions.d || :
	if amove usr/share/fish/completions; then
		warning "fish completions for programs belong in /usr/share/fish/vendor_completions.d"
	fi
	return 0
}
fishcomp() { default_fishcomp; }

# split_function <subpackage spec>: the function abuild calls for it
split_function() {
	local name=${1%%:*} split=""
	case $1 in *:*) split=${1#*:}; split=${split%%:*} ;; esac
	if [ -z "$split" ]; then
		case $name in
		*-bash-completion) split=bashcomp ;;
		*-zsh-completion) split=zshcomp ;;
		*-fish-completion) split=fishcomp ;;
		*) split=${name##*-} ;;
		esac
	fi
	echo "$split"
}

# --- checks --------------------------------------------------------------------

# The test of one APKBUILD; runs in a subshell, exits with the number of
# failed checks.
test_apkbuild() {
	local p=$1
	local errors=0
	fail() { echo "FAIL [$p]: $*" >&2; errors=$((errors + 1)); }
	# same <what> <actual> <expected>: word lists compared as sets
	same() {
		local a e
		a=$(printf '%s\n' $2 | LC_ALL=C sort | xargs)
		e=$(printf '%s\n' $3 | LC_ALL=C sort | xargs)
		[ "$a" = "$e" ] || fail "$1 is \"$a\", expected \"$e\""
	}

	# abuild's variables, set before it sources the APKBUILD
	startdir=$ROOT/apk/$p
	APKBUILD=$startdir/APKBUILD
	srcdir=$WORK/$p/src
	pkgbasedir=$WORK/$p/pkg
	pkgdir=$pkgbasedir/$p
	tmpdir=$WORK/$p/tmp
	CARCH=$(uname -m)
	CBUILD="$CARCH-alpine-linux-musl"
	CHOST=$CBUILD
	CTARGET=$CBUILD
	mkdir -p "$srcdir" "$pkgbasedir"

	[ -f "$APKBUILD" ] || { fail "$APKBUILD is missing"; return 1; }
	sh -n "$APKBUILD" || { fail "sh -n: $APKBUILD is not valid sh"; return 1; }

	# shellcheck disable=SC1090
	set +u
	. "$APKBUILD"
	set -u

	# metadata
	[ "${pkgname:-}" = "$p" ] || fail "pkgname is \"${pkgname:-}\", expected \"$p\" (its directory)"
	[ "${pkgver:-}" = "$WS_VERSION" ] || fail "pkgver is \"${pkgver:-}\", Cargo.toml says \"$WS_VERSION\""
	[ "${pkgrel:-}" = 0 ] || fail "pkgrel is \"${pkgrel:-}\", expected 0"
	[ -n "${pkgdesc:-}" ] || fail "pkgdesc is empty"
	[ "$(echo "${pkgdesc:-}" | wc -l)" -eq 1 ] || fail "pkgdesc is not one line"
	[ "$(echo "${pkgdesc:-}" | wc -c)" -le 128 ] || fail "pkgdesc is longer than abuild allows (127 characters)"
	[ "${url:-}" = "$WS_REPOSITORY" ] || fail "url is \"${url:-}\", Cargo.toml's repository is \"$WS_REPOSITORY\""
	[ "${arch:-}" = all ] || fail "arch is \"${arch:-}\", expected \"all\""
	[ "${license:-}" = "AGPL-3.0-or-later" ] || fail "license is \"${license:-}\", expected AGPL-3.0-or-later"
	[ "${license:-}" = "$WS_LICENSE" ] || fail "license is \"${license:-}\", Cargo.toml says \"$WS_LICENSE\""
	same depends "${depends:-}" "$(expected "$p" depends)"
	same makedepends "${makedepends:-}" "$(expected "$p" makedepends)"
	same subpackages "${subpackages:-}" "$(expected "$p" subpackages)"
	case " ${options:-} " in *" net "*) ;; *) fail "options \"${options:-}\" lacks net (cargo fetch)" ;; esac
	case " ${options:-} " in *" !check "*) fail "options disable check" ;; esac
	[ -z "${pkgusers:-}${pkggroups:-}" ] || fail "pkgusers/pkggroups set (\"${pkgusers:-}\" \"${pkggroups:-}\"): no package of ours needs a user"
	[ -z "${install:-}" ] || fail "install scripts \"$install\" are not expected"
	local maint
	maint=$(grep -c '^# *Maintainer:' "$APKBUILD" || :)
	[ "$maint" = 1 ] || fail "$maint Maintainer lines, abuild wants exactly one"
	grep -Eq '^# Maintainer: [^ <][^<]* <[^ <>]+@[^ <>]+\.[^ <>]+>$' "$APKBUILD" ||
		fail "the Maintainer line is not an RFC 822 'Name <address>'"

	# source and checksums: one release tarball, named after $builddir
	local tarball
	tarball="$(basename "${builddir:-}").tar.gz"
	[ "${builddir:-}" = "$srcdir/$PROJECT-$pkgver" ] ||
		fail "builddir is \"${builddir:-}\", expected \$srcdir/$PROJECT-\$pkgver"
	set -- ${source:-}
	if [ $# -ne 1 ]; then
		fail "source has $# entries, expected the release tarball only"
	else
		case "$1" in
		"$url"/*/"$tarball" | "$tarball::$url"/*) ;;
		*) fail "source \"$1\" is not $tarball under \$url" ;;
		esac
	fi
	if grep -q 'SKIP' <<<"${sha512sums:-}"; then fail "sha512sums holds SKIP (aports refuses it)"; fi
	set -- ${sha512sums:-}
	if [ $# -ne 2 ]; then
		fail "sha512sums has $(($# / 2)) entries, source has 1"
	else
		[[ $1 =~ ^[0-9a-f]{128}$ ]] || fail "sha512sums: \"$1\" is not a SHA-512"
		[ "$2" = "$tarball" ] || fail "sha512sums names \"$2\", source is $tarball"
	fi
	[ -z "${sha256sums:-}${md5sums:-}" ] || fail "old sha256sums/md5sums present"
	echo ${source:-} ${sha512sums:-} >"$WORK/$p/source" # one line

	# prepare, build, check: not run, but they hold what aports does for cargo
	has() { # function text...
		local fn=$1 body t
		shift
		body=$(declare -f "$fn") || { fail "$fn() is missing"; return; }
		for t in "$@"; do
			case "$body" in *"$t"*) ;; *) fail "$fn() lacks \`$t\`" ;; esac
		done
	}
	has prepare 'default_prepare' 'cargo fetch --target="$CTARGET" --locked'
	has build "cargo auditable build --release --frozen -p $p"
	has check "cargo test --frozen -p $p"
	has package

	# package(): in $builddir, the unpacked tarball (here: this repository)
	# (set -e only works in a subshell that is not itself tested by if, ||
	# or &&: this function runs with set +e and reads $? afterwards.)
	ln -s "$ROOT" "$builddir"
	local rc
	(set -e +u; cd "$builddir"; package) >"$WORK/$p/package.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		cat "$WORK/$p/package.log" >&2
		fail "package() failed (exit $rc)"
		return $errors
	fi

	# the split functions, each in $pkgdir as abuild runs them, in order
	local spec name split
	for spec in $subpackages; do
		name=${spec%%:*}
		split=$(split_function "$spec")
		declare -F "$split" >/dev/null || { fail "no split function $split() for $name"; continue; }
		(
			set -e +u
			subpkgname=$name subpkgdir=$pkgbasedir/$name
			provides="" install_if=""
			cd "$pkgdir"
			"$split"
			printf '%s\n' "${depends:-}" >"$WORK/$p/depends.$name"
			printf '%s\n' "${install_if:-}" >"$WORK/$p/install_if.$name"
		) >"$WORK/$p/split.$name.log" 2>&1
		rc=$?
		if [ $rc -ne 0 ]; then
			cat "$WORK/$p/split.$name.log" >&2
			fail "split function $split() of $name failed (exit $rc)"
			continue
		fi
		same "$name: depends" "$(cat "$WORK/$p/depends.$name")" "$(expected "$p" "depends:$name")"
		same "$name: install_if" "$(cat "$WORK/$p/install_if.$name")" "$(expected "$p" "install_if:$name")"
	done
	# abuild drops directories left empty in the main package
	rmdir "$pkgdir"/usr/lib "$pkgdir"/usr/bin "$pkgdir"/usr/share "$pkgdir"/usr \
		"$pkgdir"/etc "$pkgdir"/lib 2>/dev/null || :

	# the trees, paths and modes
	local dir actual want pair installed from
	for name in "$p" $(for spec in $subpackages; do echo "${spec%%:*}"; done); do
		dir=$pkgbasedir/$name
		actual=""
		if [ -d "$dir" ]; then
			actual=$(cd "$dir" && find . -mindepth 1 -printf '%m %P\n' | LC_ALL=C sort -k2)
		fi
		want=$(expected_tree "$p" "$name" | LC_ALL=C sort -k2)
		if [ "$actual" != "$want" ]; then
			fail "the files of $name differ from the expected ones (- expected, + packaged):"
			diff -u <(echo "$want") <(echo "$actual") | tail -n +3 >&2 || :
		fi
		# what abuild's postcheck warns or fails about
		[ ! -e "$dir"/etc/init.d ] && [ ! -e "$dir"/etc/conf.d ] || [ "${name%-openrc}" != "$name" ] ||
			fail "$name holds /etc/init.d or /etc/conf.d but is not an -openrc package"
		[ ! -e "$dir"/usr/share/doc ] && [ ! -e "$dir"/usr/share/man ] || [ "${name%-doc}" != "$name" ] ||
			fail "$name holds /usr/share/doc or /usr/share/man but is not a -doc package"
		[ ! -e "$dir"/usr/share/bash-completion ] || [ "${name%-bash-completion}" != "$name" ] ||
			fail "$name holds bash completions but is not a -bash-completion package"
		[ ! -e "$dir"/usr/share/zsh/site-functions ] || [ "${name%-zsh-completion}" != "$name" ] ||
			fail "$name holds zsh completions but is not a -zsh-completion package"
		[ ! -e "$dir"/usr/share/fish/vendor_completions.d ] || [ "${name%-fish-completion}" != "$name" ] ||
			fail "$name holds fish completions but is not a -fish-completion package"
		if [ -d "$dir" ] && [ -n "$(find "$dir" -path '*/usr/share/man/*' -type f -name '*.[0-8]')" ]; then
			fail "$name holds uncompressed man pages"
		fi
		if [ -d "$dir" ] && [ -n "$(find "$dir" -type f -empty)" ]; then
			fail "$name holds empty files: $(cd "$dir" && find . -type f -empty | xargs)"
		fi
		if [ -d "$dir" ] && [ -n "$(find "$dir" \( -perm -u+s -o -perm -g+s -o -type d -perm -o+w \))" ]; then
			fail "$name holds setuid/setgid files or world-writable directories"
		fi
		# contents: what was installed is what the repository holds
		while read -r installed from; do
			[ -n "$installed" ] || continue
			cmp -s "$dir/$installed" "$ROOT/$from" || fail "$name: /$installed is not $from"
		done < <(expected_same "$p" "$name")
		# abuild's initdcheck: OpenRC scripts run by openrc-run
		if [ -d "$dir"/etc/init.d ]; then
			local initd
			for initd in "$dir"/etc/init.d/*; do
				[ "$(head -n 1 "$initd")" = "#!/sbin/openrc-run" ] ||
					fail "$name: /etc/init.d/${initd##*/} does not start with #!/sbin/openrc-run"
			done
		fi
	done
	if [ "$p" = ntari-admin ] && [ -f "$pkgbasedir/$p-doc/usr/share/man/man1/ntari-admin.1.gz" ]; then
		gzip -dc "$pkgbasedir/$p-doc/usr/share/man/man1/ntari-admin.1.gz" | head -n 5 | grep -q '^\.TH' ||
			fail "the man page has no .TH header"
	fi
	return $errors
}

status=0
for p in "${PACKAGES[@]}"; do
	echo "== apk/$p/APKBUILD"
	mkdir -p "$WORK/$p"
	# In a subshell (the APKBUILD's variables and functions stay there), and
	# with set +e: every check runs and reports, the count is the status.
	set +e
	(test_apkbuild "$p")
	n=$?
	set -e
	if [ $n -eq 0 ]; then
		echo "   ok: metadata, checksums, prepare/build/check, package() and every split: files and modes as expected"
	else
		echo "   apk/$p/APKBUILD: $n check(s) failed" >&2
		status=1
	fi
done

# one tarball for all: the same source and checksum in every APKBUILD
if [ "$(cat "$WORK"/*/source 2>/dev/null | sort -u | wc -l)" -ne 1 ]; then
	echo "FAIL: the APKBUILDs do not share one source tarball and checksum:" >&2
	for p in "${PACKAGES[@]}"; do echo "  $p: $(cat "$WORK/$p/source" 2>/dev/null)" >&2; done
	status=1
fi

if [ $status -eq 0 ]; then
	echo "== apk: all ${#PACKAGES[@]} APKBUILDs pass"
else
	echo "== apk: FAILED" >&2
fi
exit $status
