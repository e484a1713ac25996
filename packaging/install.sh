#!/bin/sh
# Add farmseg to your desktop's application menu (for you only; no root needed).
#
#   ./install.sh              menu entry, icons, and a `farmseg` command in ~/.local/bin
#   ./install.sh --uninstall  remove them again
#
# It copies farmseg.desktop to ~/.local/share/applications (pointing at this folder's
# farmseg executable) and the icon to ~/.local/share/icons/hicolor. Move the farmseg folder
# where you want to keep it first (e.g. ~/Applications/farmseg): the entry points here.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
EXE="$HERE/farmseg"
RES="$HERE/_internal/resources"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"
ICONS="$DATA/icons/hicolor"
BIN="$HOME/.local/bin"
SIZES="16 32 48 64 128 256"

refresh() {
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" || true
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$APPS/farmseg.desktop" "$ICONS/scalable/apps/farmseg.svg"
    for size in $SIZES; do rm -f "$ICONS/${size}x${size}/apps/farmseg.png"; done
    if [ -L "$BIN/farmseg" ] && [ "$(readlink "$BIN/farmseg")" = "$EXE" ]; then
        rm -f "$BIN/farmseg"
    fi
    refresh
    echo "farmseg: menu entry and icons removed (this folder is left as it is)"
    exit 0
fi

[ -x "$EXE" ] || { echo "install.sh: $EXE not found: run me from the unpacked farmseg folder" >&2; exit 1; }
case "$EXE" in
    *[\"\`\$\\]*) echo "install.sh: the folder path must not contain \" \` \$ or \\: $HERE" >&2; exit 1 ;;
esac

mkdir -p "$APPS" "$ICONS/scalable/apps" "$BIN"
for size in $SIZES; do
    mkdir -p "$ICONS/${size}x${size}/apps"
    cp "$RES/icons/farmseg-$size.png" "$ICONS/${size}x${size}/apps/farmseg.png"
done
cp "$RES/farmseg.svg" "$ICONS/scalable/apps/farmseg.svg"
# the entry runs this folder's executable, whether or not ~/.local/bin is on the PATH
sed -e "s|^Exec=farmseg |Exec=\"$EXE\" |" -e "s|^TryExec=.*|TryExec=$EXE|" \
    "$RES/farmseg.desktop" > "$APPS/farmseg.desktop"
chmod 644 "$APPS/farmseg.desktop"
ln -sfn "$EXE" "$BIN/farmseg"
refresh
echo "farmseg: added to the application menu ($APPS/farmseg.desktop)"
echo "farmseg: command line: $BIN/farmseg (e.g. farmseg segment image.tif -o fields.gpkg)"
