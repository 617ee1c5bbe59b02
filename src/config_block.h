/*
 * config_block.h - repeated blocks of a config file (config.h's header
 * comment has the syntax): [block.T.NAME] sections are kept as text while
 * the file is read, and a [repeat.R] section is expanded into [layer.R.K.NAME]
 * layers when its keys are complete. Only config.c calls these.
 */
#ifndef SPOTTRAIN_CONFIG_BLOCK_H
#define SPOTTRAIN_CONFIG_BLOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef struct config_blocks config_blocks; /* the templates and the open [repeat.*] */

/*
 * One key of the file as inih reads it. A key of [block.*] or [repeat.*] is
 * taken (1); a key of another section first expands the [repeat.*] before it
 * and is then left to the caller (0); -1 with a message in err on error.
 * *b is allocated on first use.
 */
int config_block_key(config_blocks **b, config *c, const char *section, const char *key, const char *value,
		     char *err, size_t errlen);
/* At the end of the file: expand the [repeat.*] still open. false with a message. */
bool config_block_finish(config_blocks *b, config *c, char *err, size_t errlen);
void config_blocks_free(config_blocks *b);

/* config.c: one key of [layer.NAME] ("inputs" included), adding the layer if new. */
bool config_layer_key(config *c, const char *lname, const char *key, const char *value, char *err,
		      size_t errlen);
/* config.c: the index of the layer called name among the first `before`, -1 if none. */
int config_find_layer(const config *c, const char *name, int before);

#endif
