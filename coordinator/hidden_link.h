/* How calibration hidden states travel from one worker's layer block to the next (lq-calibrate's
 * pipeline, DESIGN.md §4): MPI between CPU workers, NCCL between GPU workers. Both move one
 * window of seqlen × dim floats per call, in window order, between neighbouring workers; the
 * caller's buffers are host memory either way, so lq_calib_work's callbacks do not change with
 * the transport.
 *
 * The NCCL link stages each window through a device buffer (cudaMemcpy, then ncclSend/ncclRecv
 * on a stream of its own). While the forward pass runs on the CPU that is a detour, not a
 * speed-up: it is written now so that GPU workers, once they hold hidden states in device
 * memory, drop the two copies and keep the rest. Built without CUDA, opening it is an error. */
#ifndef LQ_HIDDEN_LINK_H
#define LQ_HIDDEN_LINK_H

#include "lq_common.h"

#include <mpi.h>

typedef enum { LQ_LINK_MPI = 0, LQ_LINK_NCCL } lq_link_kind;

typedef struct lq_hidden_link lq_hidden_link;

/* Collective over `workers` (every worker calls it): worker `rank` of the communicator, windows
 * of `floats` floats, to and from the neighbouring workers (rank − 1 and rank + 1 of workers). */
lq_status lq_hidden_link_open(lq_link_kind kind, MPI_Comm workers, size_t floats,
                              lq_hidden_link **out);
lq_status lq_hidden_link_send(lq_hidden_link *l, const float *host);   /* to rank + 1 */
lq_status lq_hidden_link_recv(lq_hidden_link *l, float *host);         /* from rank − 1 */
void lq_hidden_link_close(lq_hidden_link *l);
lq_status lq_link_kind_from_name(const char *name, lq_link_kind *out);

#endif
