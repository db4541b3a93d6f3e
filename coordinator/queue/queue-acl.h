/* queue-acl.h: the Redis ACL rules for the queue's three roles, so a site
 * can give submitters, workers and operators their own users:
 *
 *   ACL SETUSER <name> on ><password> <rules>
 *
 * with <rules> split on spaces. Redis runs a function's inner commands
 * with the caller's ACL, so each role gets the commands its functions run,
 * and key patterns are what keep a submitter off results (P:res:*), worker
 * records and the dead letters: it may read every key of the queue but
 * write only the keys submit and cancel touch.
 *
 *   submit  FCALL lisa_version, lisa_batch_new, lisa_submit, lisa_cancel;
 *           the reads of status, wait, watch, result, queue and workers
 *   worker  every lisa_* function, XREADGROUP, XACK, XCLAIM, XAUTOCLAIM,
 *           XGROUP CREATE, FUNCTION LOAD / LIST; all keys of the queue
 *   admin   every command but the @dangerous ones (CONFIG GET and INFO
 *           allowed) on the queue's keys
 *
 * Neither submit nor worker may run CONFIG GET (it would show every
 * setting), so their durability check reports "not checked".
 *
 * Deliberately not here: creating users (the operator runs ACL SETUSER or
 * writes an ACL file), passwords. */
#ifndef LISA_QUEUE_ACL_H
#define LISA_QUEUE_ACL_H

#include <stddef.h>

/* The rule list of role ("submit", "worker", "admin") for the queue under
 * prefix (NULL: "lisa") into buf (n bytes), without the user name, "on"
 * and the password; glob characters of the prefix are escaped. Returns
 * buf, or NULL with lisa_error_get() saying why (unknown role, a prefix
 * with spaces, buf too small). */
const char *lisa_queue_acl_rules(const char *role, const char *prefix, char *buf, size_t n);

#endif
