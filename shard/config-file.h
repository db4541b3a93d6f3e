/* config-file.h: reading a model's config.json: a path to the file, or a
 * directory holding one, read whole with a size bound. The parsing belongs
 * to each model (llama-config.c, clip.c, the engine). */
#ifndef LISA_CONFIG_FILE_H
#define LISA_CONFIG_FILE_H

#include <stddef.h>

#include "status.h"

#define LISA_CONFIG_FILE_MAX ((long)16 << 20)

/* Reads `path` (or path/config.json when path is a directory) into a
 * malloc'd NUL-terminated buffer. Errors name the file: LISA_ERR_IO when it
 * cannot be opened or read, LISA_ERR_FORMAT when it is over
 * LISA_CONFIG_FILE_MAX bytes. */
lisa_status lisa_config_file_read(const char *path, char **text, size_t *len);

#endif
