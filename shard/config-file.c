/* config-file.c: see config-file.h. */
#include "config-file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

lisa_status lisa_config_file_read(const char *path, char **text, size_t *len) {
    char buf[4096];
    struct stat sb;
    *text = NULL;
    *len = 0;
    if (stat(path, &sb) != 0)
        return lisa_error_set(LISA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        int n = snprintf(buf, sizeof buf, "%s/config.json", path);
        if (n < 0 || (size_t)n >= sizeof buf)
            return lisa_error_set(LISA_ERR_ARG, "path too long: %.64s...", path);
        path = buf;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return lisa_error_set(LISA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *t = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    lisa_status s = LISA_OK;
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        s = lisa_error_set(LISA_ERR_IO, "cannot read %s", path);
    else if (n > LISA_CONFIG_FILE_MAX)
        s = lisa_error_set(LISA_ERR_FORMAT, "%s: %ld bytes is too large for a config", path, n);
    else if (!(t = malloc((size_t)n + 1)))
        s = lisa_error_set(LISA_ERR_NOMEM, "out of memory reading %s", path);
    else if (fread(t, 1, (size_t)n, f) != (size_t)n)
        s = lisa_error_set(LISA_ERR_IO, "short read on %s", path);
    fclose(f);
    if (s != LISA_OK) {
        free(t);
        return s;
    }
    t[n] = 0;
    *text = t;
    *len = (size_t)n;
    return LISA_OK;
}
