# Sourced by the *_cpu.sh scripts: data views of symlinks into ../shared/data (nothing copied; the graph cache
# is shared with the files they point at).
# view_of SRC DEST [TRAIN_PAIRS]: DEST gets a symlink to each of SRC's files; with TRAIN_PAIRS, a train.csv of its
# own holding SRC's first TRAIN_PAIRS ids.
view_of() {
  local src=$1 dest=$2 pairs=${3:-}
  mkdir -p "$dest"
  for f in "$src"/*; do ln -sfn "$f" "$dest/$(basename "$f")"; done
  if [ -n "$pairs" ]; then rm "$dest/train.csv"; head -$((pairs + 1)) "$src/train.csv" > "$dest/train.csv"; fi
}
