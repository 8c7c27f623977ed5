/* io_aio_absent.c - built instead of io_aio.c when libaio is missing: the
   libaio backend is not in this build, and DKV_IO_AUTO skips it. */
#include "io_int.h"

const struct io_ops *const io_aio_ops_ptr = NULL;
