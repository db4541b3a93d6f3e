/* cmd-tokenize.c: `lisa tokenize`: encodes all of stdin to token ids, or
 * decodes ids read from stdin back to text, with a LLaMA tokenizer.model
 * (and LISA's added tokens). It is a thin shell over coordinator/request/tokenizer.c;
 * it deliberately builds no chat prompt and splices no `<image>`. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli-util.h"
#include "commands.h"
#include "tokenizer.h"

static void tokenize_help(FILE *f) {
    fprintf(f,
            "usage: lisa tokenize --tokenizer FILE [--added-tokens FILE] [--bos] < text\n"
            "       lisa tokenize --tokenizer FILE --decode < ids\n"
            "\n"
            "Encodes ALL of stdin (bytes, newlines included) as one text and prints its\n"
            "token ids on one line, space-separated, ending in a newline. With --decode,\n"
            "reads whitespace-separated ids from stdin and prints the decoded text exactly,\n"
            "with no newline added.\n"
            "\n"
            "Encoding follows SentencePiece; with added tokens it follows transformers\n"
            "4.31's slow LlamaTokenizer (legacy) as LISA uses it: added tokens such as\n"
            "[SEG] are split out first and the whitespace around them is dropped.\n"
            "\n"
            "options:\n"
            "  --tokenizer FILE      SentencePiece tokenizer.model (required)\n"
            "  --added-tokens FILE   added_tokens.json ({\"token\": id, ...}); default: the\n"
            "                        added_tokens.json next to the --tokenizer file, if any\n"
            "  --no-added-tokens     ignore added_tokens.json: pure SentencePiece\n"
            "  --bos                 prepend the BOS id (1 for LLaMA) when encoding\n"
            "  --decode              decode ids to text instead of encoding\n"
            "  -h, --help            show this help\n"
            "\n"
            "Exit status: 0 ok, 1 runtime error (unreadable or corrupt files, bad ids),\n"
            "2 usage error.\n");
}

/* Reads all of `f` into a malloc'd, NUL-terminated buffer; NULL on failure. */
static char *tokenize_read_all(FILE *f, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n + 1 >= cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The added_tokens.json next to `model` (malloc'd) when it exists, else NULL. */
static char *tokenize_sibling_added(const char *model) {
    const char *slash = strrchr(model, '/');
    size_t dir_len = slash ? (size_t)(slash - model) + 1 : 0;
    static const char name[] = "added_tokens.json";
    char *p = malloc(dir_len + sizeof name);
    if (!p) return NULL;
    memcpy(p, model, dir_len);
    memcpy(p + dir_len, name, sizeof name);
    struct stat st;
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) return p;
    free(p);
    return NULL;
}

/* Encodes stdin and prints the ids. Returns the exit status. */
static int tokenize_encode(const lisa_tokenizer *tok, int bos) {
    size_t len = 0, n = 0;
    char *text = tokenize_read_all(stdin, &len);
    if (!text) {
        fprintf(stderr, "lisa tokenize: cannot read stdin: %s\n", strerror(errno));
        return 1;
    }
    int32_t *ids = NULL;
    lisa_status st = lisa_tokenizer_encode(tok, text, len, bos, &ids, &n);
    free(text);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa tokenize: %s\n", lisa_error_get());
        return 1;
    }
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", (int)ids[i]);
    putchar('\n');
    free(ids);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Parses the ids on stdin, decodes and prints them. Returns the exit status. */
static int tokenize_decode(const lisa_tokenizer *tok) {
    size_t len = 0, n = 0, cap = 256;
    char *in = tokenize_read_all(stdin, &len);
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!in || !ids) {
        fprintf(stderr, "lisa tokenize: cannot read stdin\n");
        free(in);
        free(ids);
        return 1;
    }
    int rc = 0;
    for (char *p = in;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f')
            p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            (*end && !strchr(" \t\n\r\v\f", *end))) {
            int w = (int)strcspn(p, " \t\n\r\v\f"); /* the bad word, not the rest */
            fprintf(stderr, "lisa tokenize: not a token id: '%.*s'\n", w < 20 ? w : 20, p);
            rc = 1;
            break;
        }
        if (n == cap) {
            int32_t *q = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!q) {
                fprintf(stderr, "lisa tokenize: out of memory\n");
                rc = 1;
                break;
            }
            ids = q;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    free(in);
    if (rc == 0) {
        char *text = NULL;
        if (lisa_tokenizer_decode(tok, ids, n, &text) != LISA_OK) {
            fprintf(stderr, "lisa tokenize: %s\n", lisa_error_get());
            rc = 1;
        } else {
            fwrite(text, 1, strlen(text), stdout);
            free(text);
            if (fflush(stdout) != 0) rc = 1;
        }
    }
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *added = NULL;
    int bos = 0, decode = 0, no_added = 0;
    const cli_opt opts[] = {
        {"--tokenizer", CLI_STRING, &model}, {"--added-tokens", CLI_STRING, &added},
        {"--bos", CLI_FLAG, &bos},           {"--decode", CLI_FLAG, &decode},
        {"--no-added-tokens", CLI_FLAG, &no_added},
    };
    int pr = cli_opts_parse("tokenize", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                            tokenize_help);
    if (pr) return pr > 0 ? 0 : 2;
    if (!model) {
        fprintf(stderr, "lisa tokenize: --tokenizer is required (see --help)\n");
        return 2;
    }
    if (decode && bos) {
        fprintf(stderr, "lisa tokenize: --bos applies to encoding only (see --help)\n");
        return 2;
    }
    if (added && no_added) {
        fprintf(stderr, "lisa tokenize: --added-tokens and --no-added-tokens conflict\n");
        return 2;
    }
    char *sibling = (!added && !no_added) ? tokenize_sibling_added(model) : NULL;
    lisa_tokenizer *tok = NULL;
    lisa_status st = lisa_tokenizer_load(&tok, model, added ? added : sibling);
    free(sibling);
    if (st != LISA_OK) {
        fprintf(stderr, "lisa tokenize: %s\n", lisa_error_get());
        return 1;
    }
    int rc = decode ? tokenize_decode(tok) : tokenize_encode(tok, bos);
    lisa_tokenizer_free(tok);
    return rc;
}
