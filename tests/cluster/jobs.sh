# jobs.sh: sourced by the cluster tests: cluster_manifest DIR IMAGES prints
# a 34-request JSONL manifest (the format of `lisa segment --manifest`)
# mixing shared images, teacher-forced answers with one and two [SEG]s,
# generation, a per-request max_new_tokens, and bad requests (missing,
# corrupt and truncated images, empty and too long prompts, a malformed
# line); the corrupt and truncated images are written into DIR, which is
# where the manifest is meant to live (their paths are relative).
cluster_manifest() {
    _cm_dir=$1 _cm_img=$2
    printf 'not an image' >"$_cm_dir/corrupt.jpg"
    head -c 2000 "$_cm_img/coffee.jpg" >"$_cm_dir/truncated.jpg"
    _cm_long=$(awk 'BEGIN { for (i = 0; i < 600; i++) printf "word%d ", i }')
    _cm_i=0
    for _cm_f in chelsea.png astronaut.jpg tall.png coffee.jpg chelsea.png exif6.jpg astronaut.jpg; do
        for _cm_p in "Segment the cat." "Where is the person?" "What is it?" \
            "Please segment the thing on the left."; do
            _cm_i=$((_cm_i + 1))
            _cm_head="{\"custom_id\": \"r$_cm_i\", \"image\": \"$_cm_img/$_cm_f\", \"prompt\": \"$_cm_p\""
            case $((_cm_i % 4)) in
            0) echo "$_cm_head, \"answer\": \"[SEG] and [SEG].\"}" ;;
            1) echo "$_cm_head, \"answer\": \"Sure, it is [SEG].\"}" ;;
            2) echo "$_cm_head, \"max_new_tokens\": 3}" ;;
            *) echo "$_cm_head}" ;;
            esac
        done
    done
    echo "{\"custom_id\": \"missing\", \"image\": \"$_cm_dir/nope.jpg\", \"prompt\": \"x\"}"
    echo "{\"custom_id\": \"corrupt\", \"image\": \"corrupt.jpg\", \"prompt\": \"x\"}"
    echo "{\"custom_id\": \"truncated\", \"image\": \"truncated.jpg\", \"prompt\": \"x\"}"
    echo "{\"custom_id\": \"empty\", \"image\": \"$_cm_img/tall.png\", \"prompt\": \"\"}"
    echo "{\"custom_id\": \"long\", \"image\": \"$_cm_img/tall.png\", \"prompt\": \"$_cm_long\"}"
    echo "this line is not json"
}
