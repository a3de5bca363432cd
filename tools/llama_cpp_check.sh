#!/usr/bin/env bash
# Checks end to end that a control vector exported by `steerbench export` acts
# in llama.cpp where steerbench applies it, and that importing it back
# (`steerbench generate --steering file.gguf`) is the identity.
#
# It builds llama.cpp's `llama-completion` from the source vendored in the
# llama-cpp-python sdist on PyPI (pinned version and sha256 below; cmake and a
# C++ compiler from Debian), fits CAA on sentiment/openings at several layers,
# exports each vector, and compares greedy continuations of llama.cpp under
# `--control-vector` with steerbench's under `--vector --layer L`:
#   - unsteered, llama.cpp and steerbench must agree (tokenisation, weights);
#   - steered, they must agree at layer L;
#   - and the steering must change the text, so the agreement means something;
#   - steerbench at layer L-1 (the convention the tensor names suggest, were
#     llama.cpp's `direction.N` block N-1's output) is printed beside it.
# Then it makes a control vector with llama.cpp's own `llama-cvector-generator`
# (mean method, every layer it writes) from contrasting prompts written for
# this check, and compares llama.cpp under `--control-vector-scaled` with
# `steerbench generate --steering` at the same scale: the import of a vector
# made elsewhere must steer every layer as llama.cpp does.
# Usage: tools/llama_cpp_check.sh [steerbench binary]
# Environment: LLAMA_CPP_DIR (build folder, default target/llama.cpp),
# LAYERS (default "3 10 20 29"), MULTIPLIER (default 8), TOKENS (default 24),
# SCALES (of the generated control vector, default "2 4").
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
DIR=${LLAMA_CPP_DIR:-target/llama.cpp}
LAYERS=${LAYERS:-"3 10 20 29"}
MULTIPLIER=${MULTIPLIER:-8}
TOKENS=${TOKENS:-24}
SCALES=${SCALES:-"2 4"}
STEERBENCH=${1:-target/debug/steerbench}
PROMPTS=("I think that the best way to spend a Sunday is"
         "My honest opinion of your essay is that")
# Contrasting prompts for llama-cvector-generator, written for this check.
POSITIVE=("I feel wonderful today, and the reason is"
          "What a delightful surprise it was when"
          "Everything about this trip has been lovely, especially"
          "I am so grateful and happy that"
          "The best part of my week was")
NEGATIVE=("I feel miserable today, and the reason is"
          "What a horrible shock it was when"
          "Everything about this trip has been awful, especially"
          "I am so bitter and unhappy that"
          "The worst part of my week was")

command -v cmake >/dev/null || { echo "llama_cpp_check: needs cmake (apt-get install cmake)" >&2; exit 1; }
[ -x "$STEERBENCH" ] || { echo "llama_cpp_check: no steerbench binary at $STEERBENCH (cargo build -p steerbench)" >&2; exit 1; }
mkdir -p "$DIR"

# 1. llama.cpp's source, from PyPI, checked against its sha256.
sdist="$DIR/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
    # PyPI's simple index (PEP 691 JSON) gives the sdist's address.
    url=$(python3 - "$VERSION" <<'EOF'
import json, sys, urllib.request
name = f"llama_cpp_python-{sys.argv[1]}.tar.gz"
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
print(next(f["url"] for f in json.load(urllib.request.urlopen(req))["files"] if f["filename"] == name))
EOF
)
    python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$sdist.part"
    mv "$sdist.part" "$sdist"
fi
echo "$SHA256  $sdist" | sha256sum -c --quiet
src="$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -d "$src" ] || tar -xzf "$sdist" -C "$DIR"

# 2. Build llama-completion, llama-quantize and llama-cvector-generator (CPU only, no network features).
bin="$DIR/build/bin/llama-completion"
gen="$DIR/build/bin/llama-cvector-generator"
if [ ! -x "$bin" ] || [ ! -x "$DIR/build/bin/llama-quantize" ] || [ ! -x "$gen" ]; then
    cmake -S "$src" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON >"$DIR/cmake.log"
    cmake --build "$DIR/build" --target llama-completion llama-quantize llama-cvector-generator -j"$(nproc)" >"$DIR/build.log"
fi
echo "llama.cpp $(cd "$src" && git describe --tags 2>/dev/null || echo "from llama-cpp-python $VERSION"): $bin"

# 3. The default model, as steerbench uses it.
"$STEERBENCH" info >/dev/null
model=$(python3 -c "import os; h=os.environ.get('STEERBENCH_HOME') or os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'steerbench'); print(os.path.join(h, 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
[ -f "$model" ] || { echo "llama_cpp_check: no default model at $model (cargo xtask setup)" >&2; exit 1; }
# llama.cpp multiplies Q4_1 weights with activations rounded to 8 bits, which
# moves near-tied greedy choices; steerbench dequantises the weights to f32.
# The same weights in f32 (llama-quantize dequantises exactly) compare the
# steering, not the kernels.
f32="$DIR/SmolLM2-135M-Instruct.F32.gguf"
[ -f "$f32" ] || "$DIR/build/bin/llama-quantize" --allow-requantize "$model" "$f32" F32 >"$DIR/quantize.log" 2>&1

llama() { # prompt [control vector [scale]]
    local cv=()
    [ $# -gt 1 ] && cv=(--control-vector "$2")
    [ $# -gt 2 ] && cv=(--control-vector-scaled "$2:$3")
    "$bin" -m "$f32" -p "$1" -n "$TOKENS" --temp 0 --top-k 1 -no-cnv --no-display-prompt --no-warmup \
        -t "$(nproc)" -c 256 "${cv[@]}" 2>/dev/null | sed 's/ *\[end of text\]//' | tr -d '\r'
}
steer() { # prompt [generate options...]
    local p=$1
    shift
    "$STEERBENCH" generate --prompt "$p" --max-new-tokens "$TOKENS" "$@"
}
same() { [ "$(printf %s "$1" | sed 's/[[:space:]]*$//')" = "$(printf %s "$2" | sed 's/[[:space:]]*$//')" ]; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
checks=0
for prompt in "${PROMPTS[@]}"; do
    a=$(llama "$prompt")
    b=$(steer "$prompt")
    checks=$((checks + 1))
    if same "$a" "$b"; then
        echo "unsteered   agree: $prompt|$a"
    else
        echo "unsteered   DIFFER: $prompt"; echo "  llama.cpp : $a"; echo "  steerbench: $b"
        failures=$((failures + 1))
    fi
done
for layer in $LAYERS; do
    vec="$work/caa_$layer.safetensors"
    cv="$work/caa_$layer.gguf"
    "$STEERBENCH" train --method caa --task sentiment/openings --limit 32 --layer "$layer" --out "$vec" >/dev/null
    "$STEERBENCH" export --steering "$vec" --multiplier "$MULTIPLIER" --out "$cv" >/dev/null
    for prompt in "${PROMPTS[@]}"; do
        unsteered=$(steer "$prompt")
        lcpp=$(llama "$prompt" "$cv")
        here=$(steer "$prompt" --vector "$vec" --layer "$layer" --multiplier "$MULTIPLIER")
        back=$(steer "$prompt" --steering "$cv")
        before=$(steer "$prompt" --vector "$vec" --layer "$((layer - 1))" --multiplier "$MULTIPLIER")
        checks=$((checks + 1))
        verdict=agree
        if ! same "$lcpp" "$here"; then verdict=DIFFER; failures=$((failures + 1)); fi
        if ! same "$back" "$here"; then verdict="$verdict, import DIFFERS"; failures=$((failures + 1)); fi
        if same "$here" "$unsteered"; then verdict="$verdict, steering changes nothing"; failures=$((failures + 1)); fi
        echo "layer $layer ×$MULTIPLIER $verdict: $prompt"
        echo "  llama.cpp direction.$layer : $lcpp"
        echo "  steerbench layer $layer     : $here"
        echo "  steerbench layer $((layer - 1))     : $before$(same "$before" "$lcpp" && echo '   (same as llama.cpp)')"
        echo "  unsteered              : $unsteered"
    done
done

# 4. A control vector made by llama.cpp itself, applied by both.
printf '%s\n' "${POSITIVE[@]}" >"$work/positive.txt"
printf '%s\n' "${NEGATIVE[@]}" >"$work/negative.txt"
made="$work/generated.gguf"
"$gen" -m "$f32" --positive-file "$work/positive.txt" --negative-file "$work/negative.txt" --method mean \
    -t "$(nproc)" -o "$made" >"$DIR/cvector.log" 2>&1
echo "llama-cvector-generator wrote $made ($(grep -c . "$work/positive.txt") prompt pairs, mean method)"
for scale in $SCALES; do
    for prompt in "${PROMPTS[@]}"; do
        unsteered=$(steer "$prompt")
        lcpp=$(llama "$prompt" "$made" "$scale")
        here=$(steer "$prompt" --steering "$made" --multiplier "$scale")
        checks=$((checks + 1))
        verdict=agree
        if ! same "$lcpp" "$here"; then verdict=DIFFER; failures=$((failures + 1)); fi
        if same "$here" "$unsteered"; then verdict="$verdict, steering changes nothing"; failures=$((failures + 1)); fi
        echo "generated control vector ×$scale $verdict: $prompt"
        echo "  llama.cpp  : $lcpp"
        echo "  steerbench : $here"
        echo "  unsteered  : $unsteered"
    done
done
echo "llama_cpp_check: $((checks)) comparisons, $failures failures"
[ "$failures" -eq 0 ]
