#!/usr/bin/env bash
# Download the wheels the GPU machine lacks, for its Python 3.12 on x86_64 (manylinux), into an ignored folder.
#
#   bench/fetch_wheels.sh                    # the GPU suite's needs, into .whl/   (about 36 MiB)
#   bench/fetch_wheels.sh --with-notebooks   # also papermill and a Jupyter kernel, to run experiment notebooks
#                                            # there (about 16 MiB more)
#   bench/fetch_wheels.sh --dir DIR          # another folder
#
# The GPU machine (see bench/README.md) has torch 2.11, transformers, peft, accelerate, scikit-image, matplotlib,
# pandas, psutil, safetensors, huggingface-hub, pyyaml, requests, tqdm, ... but not the packages below, and it
# cannot reach any registry. Every wheel is fetched with --no-deps and pinned to the version tested here, so
# nothing pulls torch or a second copy of what is there; the lists name each dependency the machine lacks
# (checked with `unzip -p WHEEL '*/METADATA' | grep ^Requires-Dist` against the machine's package list).
# `python bench/gpu_suite.py` installs the wheels of this folder whose distribution is missing, with
#   python -m pip install --no-index --no-deps --no-compile --target runs/gpu_suite/gpu/site .whl/<missing>.whl
# and puts that folder on the parts' PYTHONPATH. The device tool carries the working tree, ignored folders named
# in `carry` included, up to 64 MiB: the script fails when the folder grows past LIMIT_MIB.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=(
  diffusers==0.42.1            # CogVideoX pipeline (cogvideo part)
  importlib-metadata==10.2.0   # needed by diffusers
  lazy-importer==0.1.0         # needed by importlib-metadata 10
  imageio-ffmpeg==0.6.0        # ffmpeg with libx264/libx265/utvideo (exp04's CRF pairs); 0.8.1's wheel is 68 MB
  lpips==0.1.4                 # metrics.lpips_distance (its backbone weights are not carried: LPIPS stays n/a)
)
NOTEBOOKS=(
  papermill==2.7.0 nbformat==5.11.1 nbclient==0.11.0 ipykernel==7.4.0 ipython==9.18.1
  ipython-pygments-lexers==1.1.1 jupyter-client==8.10.0 jupyter-core==5.9.1 traitlets==5.16.1 pyzmq==27.3.0
  tornado==6.6.1 comm==0.2.3 debugpy==1.8.22 matplotlib-inline==0.2.2 nest-asyncio2==1.7.4 jedi==0.20.1
  parso==0.8.7 prompt-toolkit==3.0.53 wcwidth==0.9.4 pexpect==4.9.0 ptyprocess==0.7.0 stack-data==0.6.3
  executing==2.3.0 asttokens==3.0.2 pure-eval==0.2.4 fastjsonschema==2.22.3 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 tenacity==9.2.1 entrypoints==0.4.2
  platformdirs==4.14.9
)
DIR=.whl
LIMIT_MIB=56
PKGS=("${SUITE[@]}")
while [ $# -gt 0 ]; do
  case "$1" in
    --with-notebooks) PKGS+=("${NOTEBOOKS[@]}"); shift ;;
    --dir) DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "fetch_wheels.sh: unknown argument $1 (expected --with-notebooks or --dir DIR)" >&2; exit 2 ;;
  esac
done

mkdir -p "$DIR"
python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_26_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$DIR" "${PKGS[@]}"

# Keep exactly one version of each package asked for (two versions of one package stop the install there).
norm() { echo "$1" | tr 'A-Z_.' 'a-z--'; }
wanted=" "
for p in "${PKGS[@]}"; do wanted+="$(norm "${p%%==*}")-${p##*==} "; done
for f in "$DIR"/*.whl; do
  base=$(basename "$f"); name=$(norm "${base%%-*}"); rest=${base#*-}; version=${rest%%-*}
  case "$wanted" in *" $name-$version "*) ;; *) echo "removing $base (not in the list)"; rm -f "$f" ;; esac
done

n=$(ls "$DIR"/*.whl | wc -l)
bytes=$(cat "$DIR"/*.whl | wc -c)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "$n wheels, $mib MiB in $DIR (carry limit: 64 MiB with the working tree)"
if [ "$n" -ne "${#PKGS[@]}" ]; then echo "expected ${#PKGS[@]} wheels, found $n" >&2; exit 1; fi
if [ "$mib" -gt "$LIMIT_MIB" ]; then echo "$DIR holds $mib MiB, over $LIMIT_MIB MiB: too much to carry" >&2; exit 1; fi
