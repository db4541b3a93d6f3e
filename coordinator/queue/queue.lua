#!lua name=lisa
-- queue.lua: the job queue's state changes as Redis 7 functions (see
-- coordinator/queue/queue.h for the keys and states). Being written.
redis.register_function{function_name='lisa_version', callback=function() return 1 end,
                        flags={'no-writes'}}
