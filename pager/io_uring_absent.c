/* io_uring_absent.c - built instead of io_uring.c when liburing is missing:
   the io_uring backend is not in this build, and DKV_IO_AUTO skips it. */
#include "io_int.h"

const struct io_ops *const io_uring_ops_ptr = NULL;
