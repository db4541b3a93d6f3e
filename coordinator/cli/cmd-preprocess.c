/* cmd-preprocess.c: `lisa preprocess`: decodes an image and writes the
 * uint8 image one preprocessing branch feeds to its model before
 * normalisation (CLIP: the resized center crop; SAM: the resized image,
 * unpadded), as PNG or, for byte comparisons, binary PPM. It prints the
 * sizes involved. It is a thin shell over coordinator/request/image.c and
 * preprocess.c; it deliberately writes no float tensors. */
#include <stdio.h>
#include <string.h>

#include "cli-util.h"
#include "commands.h"
#include "image.h"
#include "preprocess.h"

static void preprocess_help(FILE *f) {
    fprintf(f,
            "usage: lisa preprocess --image IMG --branch clip|sam --out FILE [--size N]\n"
            "\n"
            "Decodes IMG (JPEG or PNG; EXIF orientation applied, alpha dropped) and\n"
            "writes the uint8 RGB image a branch's model sees before normalisation:\n"
            "  clip  short side to N (224) with Pillow BICUBIC, center crop N x N\n"
            "  sam   long side to N (1024) with Pillow BILINEAR, unpadded\n"
            "FILE ending in .ppm is written as binary PPM (raw bytes, for cmp/sha256);\n"
            "anything else as PNG. Prints one line: original, resized and output sizes\n"
            "as WxH.\n"
            "\n"
            "options:\n"
            "  --image IMG           input image (required)\n"
            "  --branch clip|sam     which preprocessing (required)\n"
            "  --out FILE            output image (required)\n"
            "  --size N              clip: crop/short side (224); sam: long side (1024)\n"
            "  -h, --help            show this help\n"
            "\n"
            "Exit status: 0 ok, 1 runtime error (unreadable, corrupt or unsupported\n"
            "image, write failure), 2 usage error.\n");
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int cmd_preprocess(int argc, char **argv) {
    const char *image = NULL, *branch = NULL, *out = NULL;
    long size = -1;
    const cli_opt opts[] = {
        {"--image", CLI_STRING, &image}, {"--branch", CLI_STRING, &branch},
        {"--out", CLI_STRING, &out},     {"--size", CLI_COUNT, &size},
    };
    int pr = cli_opts_parse("preprocess", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            preprocess_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (size == 0) {
        fprintf(stderr, "lisa preprocess: --size must be >= 1\n");
        return 2;
    }
    if (!image || !branch || !out) {
        fprintf(stderr, "lisa preprocess: --image, --branch and --out are required\n\n");
        preprocess_help(stderr);
        return 2;
    }
    int is_clip = !strcmp(branch, "clip");
    if (!is_clip && strcmp(branch, "sam") != 0) {
        fprintf(stderr, "lisa preprocess: --branch must be clip or sam, not '%s'\n", branch);
        return 2;
    }
    if (size > 16384) {
        fprintf(stderr, "lisa preprocess: --size %ld is too large\n", size);
        return 2;
    }
    if (size < 0) size = is_clip ? 224 : 1024;

    lisa_image img;
    lisa_status st = lisa_image_load(&img, image, NULL);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa preprocess: %s\n", lisa_error_get());
        return 1;
    }
    lisa_preprocessed p;
    st = is_clip ? lisa_preprocess_clip(&img, (int)size, &p)
                 : lisa_preprocess_sam(&img, (int)size, (int)size, &p);
    lisa_image_free(&img);
    if (st == LISA_OK) {
        st = ends_with(out, ".ppm") ? lisa_image_write_ppm(&p.resized, out)
                                    : lisa_image_write_png(&p.resized, out);
        if (st == LISA_OK)
            printf("original %dx%d resized %dx%d output %dx%d\n", p.orig_w, p.orig_h,
                   p.resize_w, p.resize_h, p.resized.w, p.resized.h);
        lisa_preprocessed_free(&p);
    }
    if (st != LISA_OK) {
        fprintf(stderr, "lisa preprocess: %s\n", lisa_error_get());
        return 1;
    }
    return 0;
}
