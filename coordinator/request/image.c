/* image.c: JPEG/PNG decoding to RGB, EXIF orientation, PNG/PPM writing
 * (see image.h for the decoding rules and what is deliberately left out).
 *
 * libjpeg and libpng report errors through callbacks that longjmp back to
 * the decode function, which frees what it allocated and returns a status;
 * neither library is ever allowed to print or exit. Locals that change
 * between setjmp and a possible longjmp are volatile. */
#include "image.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

/* Progressive JPEGs may hold arbitrarily many scans, each a full pass over
 * the coefficients; real encoders write about ten. */
#define LISA_JPEG_MAX_SCANS 1000

lisa_status lisa_image_init(lisa_image *img, int w, int h) {
    img->w = img->h = 0;
    img->rgb = NULL;
    if (w < 1 || h < 1 || (size_t)w > SIZE_MAX / 3 / (size_t)h)
        return lisa_error_set(LISA_ERR_ARG, "image size %dx%d is invalid", w, h);
    img->rgb = calloc((size_t)w * (size_t)h * 3, 1);
    if (!img->rgb)
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    img->w = w;
    img->h = h;
    return LISA_OK;
}

void lisa_image_free(lisa_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

static void limits_resolve(const lisa_image_limits *in, lisa_image_limits *out) {
    out->max_file_bytes = LISA_IMAGE_DEFAULT_MAX_FILE_BYTES;
    out->max_pixels = LISA_IMAGE_DEFAULT_MAX_PIXELS;
    if (in && in->max_file_bytes) out->max_file_bytes = in->max_file_bytes;
    if (in && in->max_pixels) out->max_pixels = in->max_pixels;
}

/* Checks a header's size against the limits and against int/size_t range. */
static lisa_status check_size(const char *fmt, uint64_t w, uint64_t h,
                              const lisa_image_limits *lim) {
    if (w == 0 || h == 0)
        return lisa_error_set(LISA_ERR_FORMAT, "%s header has a zero dimension", fmt);
    if (w > INT_MAX / 4 || h > INT_MAX / 4 || w * h > lim->max_pixels)
        return lisa_error_set(LISA_ERR_ARG,
                              "%s is %llux%llu pixels, over the limit of %llu pixels",
                              fmt, (unsigned long long)w, (unsigned long long)h,
                              (unsigned long long)lim->max_pixels);
    if (w * h > SIZE_MAX / 3)
        return lisa_error_set(LISA_ERR_ARG, "%s is too large for this machine", fmt);
    return LISA_OK;
}

/* ---- EXIF ---------------------------------------------------------------- */

static uint32_t exif_rd(const uint8_t *p, int nbytes, int little) {
    uint32_t v = 0;
    for (int i = 0; i < nbytes; i++)
        v |= (uint32_t)p[little ? i : nbytes - 1 - i] << (8 * i);
    return v;
}

int lisa_image_exif_orientation(const uint8_t *data, size_t len) {
    if (!data || len < 6 || memcmp(data, "Exif\0", 5) != 0) return 1;
    const uint8_t *t = data + 6; /* the TIFF structure; offsets are from here */
    size_t n = len - 6;
    if (n < 8) return 1;
    int little;
    if (t[0] == 'I' && t[1] == 'I') little = 1;
    else if (t[0] == 'M' && t[1] == 'M') little = 0;
    else return 1;
    if (exif_rd(t + 2, 2, little) != 42) return 1;
    uint32_t ifd = exif_rd(t + 4, 4, little);
    if (ifd > n || n - ifd < 2) return 1;
    uint32_t count = exif_rd(t + ifd, 2, little);
    for (uint32_t i = 0; i < count; i++) {
        size_t off = (size_t)ifd + 2 + (size_t)12 * i;
        if (off > n || n - off < 12) return 1;
        if (exif_rd(t + off, 2, little) != 0x0112) continue;
        uint32_t type = exif_rd(t + off + 2, 2, little);
        uint32_t cnt = exif_rd(t + off + 4, 4, little);
        uint32_t v;
        if (cnt != 1) return 1;
        if (type == 3) v = exif_rd(t + off + 8, 2, little);      /* SHORT */
        else if (type == 4) v = exif_rd(t + off + 8, 4, little); /* LONG */
        else return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

lisa_status lisa_image_orient(lisa_image *img, int o) {
    if (o < 2 || o > 8) return LISA_OK;
    int w = img->w, h = img->h;
    int swap = o >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *out = malloc((size_t)w * (size_t)h * 3);
    if (!out) return lisa_error_set(LISA_ERR_NOMEM, "out of memory orienting a %dx%d image", w, h);
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy; /* source pixel of output (x, y) */
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;         /* mirror left-right */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break; /* rotate 180 */
            case 4: sx = x; sy = h - 1 - y; break;         /* mirror top-bottom */
            case 5: sx = y; sy = x; break;                 /* transpose */
            case 6: sx = y; sy = h - 1 - x; break;         /* rotate 90 clockwise */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break; /* transverse */
            default: sx = w - 1 - y; sy = x; break;        /* 8: rotate 90 counter-clockwise */
            }
            memcpy(out + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = out;
    img->w = ow;
    img->h = oh;
    return LISA_OK;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err_ctx;

static void jpeg_on_error(j_common_ptr ci) {
    jpeg_err_ctx *e = (jpeg_err_ctx *)ci->err;
    ci->err->format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (level -1) about corrupt or missing data are fatal; the three
 * that only concern metadata are ignored. Trace messages are dropped. */
static void jpeg_on_message(j_common_ptr ci, int level) {
    if (level >= 0) return;
    int code = ci->err->msg_code;
    if (code == JWRN_ADOBE_XFORM || code == JWRN_JFIF_MAJOR || code == JWRN_BOGUS_ICC) return;
    jpeg_on_error(ci);
}

static void jpeg_on_output(j_common_ptr ci) { (void)ci; }

static void jpeg_on_progress(j_common_ptr ci) {
    if (!ci->is_decompressor) return;
    if (((j_decompress_ptr)ci)->input_scan_number > LISA_JPEG_MAX_SCANS) {
        jpeg_err_ctx *e = (jpeg_err_ctx *)ci->err;
        snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", LISA_JPEG_MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

static lisa_status decode_jpeg(lisa_image *img, const uint8_t *data, size_t len,
                               const lisa_image_limits *lim) {
    struct jpeg_decompress_struct ci;
    struct jpeg_progress_mgr prog;
    jpeg_err_ctx err;
    uint8_t *volatile pix = NULL;
    volatile int orientation = 1;

    memset(&ci, 0, sizeof ci);
    memset(&prog, 0, sizeof prog);
    ci.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    err.pub.output_message = jpeg_on_output;
    err.msg[0] = 0;
    if (setjmp(err.jb)) {
        lisa_status st = err.pub.msg_code == JERR_OUT_OF_MEMORY ? LISA_ERR_NOMEM : LISA_ERR_FORMAT;
        jpeg_destroy_decompress(&ci);
        free(pix);
        return lisa_error_set(st, "corrupt or truncated JPEG: %s", err.msg);
    }
    jpeg_create_decompress(&ci);
    prog.progress_monitor = jpeg_on_progress;
    ci.progress = &prog;
    jpeg_mem_src(&ci, data, (unsigned long)len);
    jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&ci, TRUE);

    lisa_status st = check_size("JPEG", ci.image_width, ci.image_height, lim);
    if (st == LISA_OK && (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK))
        st = lisa_error_set(LISA_ERR_UNSUPPORTED, "CMYK JPEG not supported (convert it to RGB)");
    if (st == LISA_OK && ci.jpeg_color_space != JCS_GRAYSCALE &&
        ci.jpeg_color_space != JCS_YCbCr && ci.jpeg_color_space != JCS_RGB)
        st = lisa_error_set(LISA_ERR_UNSUPPORTED, "JPEG colour space %d not supported",
                            (int)ci.jpeg_color_space);
    if (st != LISA_OK) {
        jpeg_destroy_decompress(&ci);
        return st;
    }
    for (jpeg_saved_marker_ptr m = ci.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0", 5)) {
            orientation = lisa_image_exif_orientation(m->data, m->data_length);
            break;
        }
    }

    ci.out_color_space = JCS_RGB;
    ci.dct_method = JDCT_ISLOW;
    ci.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&ci);
    if (ci.output_components != 3 || ci.output_width != ci.image_width ||
        ci.output_height != ci.image_height) {
        jpeg_destroy_decompress(&ci);
        return lisa_error_set(LISA_ERR_FORMAT, "JPEG decoder produced %d components at %ux%u",
                              ci.output_components, ci.output_width, ci.output_height);
    }
    size_t w = ci.output_width, h = ci.output_height;
    pix = malloc(w * h * 3);
    if (!pix) {
        jpeg_destroy_decompress(&ci);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory for a %zux%zu JPEG", w, h);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = pix + (size_t)ci.output_scanline * w * 3;
        if (jpeg_read_scanlines(&ci, &row, 1) != 1) {
            jpeg_destroy_decompress(&ci);
            free(pix);
            return lisa_error_set(LISA_ERR_FORMAT, "JPEG decoder stalled");
        }
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);

    img->w = (int)w;
    img->h = (int)h;
    img->rgb = pix;
    st = lisa_image_orient(img, orientation);
    if (st != LISA_OK) lisa_image_free(img);
    return st;
}

/* ---- PNG ----------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    char msg[256];
} png_io_ctx;

static void png_on_read(png_structp p, png_bytep out, size_t n) {
    png_io_ctx *s = png_get_io_ptr(p);
    if (n > s->len - s->pos) png_error(p, "unexpected end of data");
    memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp p, png_const_charp msg) {
    png_io_ctx *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(p, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg) {
    (void)p;
    (void)msg;
}

static lisa_status decode_png(lisa_image *img, const uint8_t *data, size_t len,
                              const lisa_image_limits *lim) {
    png_io_ctx io = {data, len, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_on_error,
                                             png_on_warning);
    if (!png) return lisa_error_set(LISA_ERR_NOMEM, "out of memory starting libpng");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory starting libpng");
    }
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        return lisa_error_set(LISA_ERR_FORMAT, "corrupt or truncated PNG: %s", io.msg);
    }
    png_set_read_fn(png, &io, png_on_read);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    lisa_status st = check_size("PNG", w, h, lim);
    if (st != LISA_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (!(ctype & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)w * 3) {
        png_destroy_read_struct(&png, &info, NULL);
        return lisa_error_set(LISA_ERR_FORMAT, "PNG did not convert to 8-bit RGB");
    }
    pix = malloc((size_t)w * h * 3);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pix || !rows) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        return lisa_error_set(LISA_ERR_NOMEM, "out of memory for a %ux%u PNG", w, h);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    img->w = (int)w;
    img->h = (int)h;
    img->rgb = pix;
    return LISA_OK;
}

/* ---- entry points --------------------------------------------------------- */

lisa_status lisa_image_decode(lisa_image *img, const uint8_t *data, size_t len,
                              const lisa_image_limits *limits) {
    lisa_image_limits lim;
    limits_resolve(limits, &lim);
    img->w = img->h = 0;
    img->rgb = NULL;
    if (!data || len == 0) return lisa_error_set(LISA_ERR_FORMAT, "empty image data");
    if (len > lim.max_file_bytes)
        return lisa_error_set(LISA_ERR_ARG, "image data is %zu bytes, over the limit of %zu",
                              len, lim.max_file_bytes);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(img, data, len, &lim);
    if (len >= 8 && !memcmp(data, png_sig, 8)) return decode_png(img, data, len, &lim);
    return lisa_error_set(LISA_ERR_FORMAT, "unrecognized image format (not JPEG or PNG)");
}

lisa_status lisa_image_read_file(const char *path, const lisa_image_limits *limits,
                                 uint8_t **out, size_t *len) {
    lisa_image_limits lim;
    limits_resolve(limits, &lim);
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return lisa_error_set(LISA_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        fclose(f);
        return lisa_error_set(LISA_ERR_FORMAT, "%s: empty file", path);
    }
    if ((uint64_t)sb.st_size > lim.max_file_bytes) {
        fclose(f);
        return lisa_error_set(LISA_ERR_ARG, "%s: file is %lld bytes, over the limit of %zu",
                              path, (long long)sb.st_size, lim.max_file_bytes);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n);
    if (!buf) {
        fclose(f);
        return lisa_error_set(LISA_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return lisa_error_set(LISA_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    *out = buf;
    *len = n;
    return LISA_OK;
}

lisa_status lisa_image_load(lisa_image *img, const char *path, const lisa_image_limits *limits) {
    img->w = img->h = 0;
    img->rgb = NULL;
    uint8_t *buf;
    size_t n;
    LISA_TRY(lisa_image_read_file(path, limits, &buf, &n));
    lisa_status st = lisa_image_decode(img, buf, n, limits);
    free(buf);
    if (st != LISA_OK) {
        char msg[900];
        snprintf(msg, sizeof msg, "%s", lisa_error_get());
        lisa_error_set(st, "%s: %s", path, msg);
    }
    return st;
}

/* ---- writing ------------------------------------------------------------- */

static void png_on_write_error(png_structp p, png_const_charp msg) {
    char *dst = png_get_error_ptr(p);
    snprintf(dst, 256, "%s", msg);
    png_longjmp(p, 1);
}

static lisa_status write_png(const uint8_t *pix, int w, int h, int channels, const char *path) {
    if (!pix || w < 1 || h < 1)
        return lisa_error_set(LISA_ERR_ARG, "%s: no image to write", path);
    char msg[256] = "";
    FILE *volatile f = fopen(path, "wb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "%s: cannot create", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, png_on_write_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        return lisa_error_set(LISA_ERR_NOMEM, "%s: out of memory starting libpng", path);
    }
    errno = 0;
    if (setjmp(png_jmpbuf(png))) {
        int err = errno; /* a failed fwrite's (libpng says only "Write Error") */
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        return lisa_error_set(LISA_ERR_IO, "%s: PNG write failed: %s%s%s%s", path, msg,
                              err ? " (" : "", err ? strerror(err) : "", err ? ")" : "");
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, pix + (size_t)y * (size_t)w * (size_t)channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) {
        remove(path);
        return lisa_error_set(LISA_ERR_IO, "%s: write failed", path);
    }
    return LISA_OK;
}

lisa_status lisa_image_write_png(const lisa_image *img, const char *path) {
    return write_png(img->rgb, img->w, img->h, 3, path);
}

lisa_status lisa_image_write_gray_png(const uint8_t *gray, int w, int h, const char *path) {
    return write_png(gray, w, h, 1, path);
}

lisa_status lisa_image_write_ppm(const lisa_image *img, const char *path) {
    if (!img->rgb || img->w < 1 || img->h < 1)
        return lisa_error_set(LISA_ERR_ARG, "%s: no image to write", path);
    FILE *f = fopen(path, "wb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "%s: cannot create", path);
    size_t n = (size_t)img->w * (size_t)img->h * 3;
    int ok = fprintf(f, "P6\n%d %d\n255\n", img->w, img->h) > 0 && fwrite(img->rgb, 1, n, f) == n;
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        remove(path);
        return lisa_error_set(LISA_ERR_IO, "%s: write failed", path);
    }
    return LISA_OK;
}
