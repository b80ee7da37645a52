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
# view_with_copies SRC VIEW COPIES: the set SRC at VIEW/high_density/<name>, and COPIES - 1 train-only copies at
# VIEW/high_density_copy<c>/<name> (no val.csv, so validation counts the set once): its pairs COPIES times an epoch.
view_with_copies() {
  local src=$1 view=$2 copies=$3 name c
  name=$(basename "$src")
  view_of "$src" "$view/high_density/$name"
  for c in $(seq 2 "$copies"); do
    view_of "$src" "$view/high_density_copy$c/$name"; rm -f "$view/high_density_copy$c/$name/val.csv"
  done
}
