/* lq_hidden_link (hidden_link.h): the MPI link, and the NCCL one when built with CUDA. */
#include "hidden_link.h"

#include <stdlib.h>
#include <string.h>

#ifdef LQ_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

struct lq_hidden_link {
    lq_link_kind kind;
    MPI_Comm comm;
    int rank, size;
    size_t floats;
#ifdef LQ_HAVE_NCCL
    ncclComm_t nccl;
    cudaStream_t stream;
    float *device;          /* one window */
#endif
};

lq_status lq_link_kind_from_name(const char *name, lq_link_kind *out) {
    if (!strcmp(name, "mpi")) *out = LQ_LINK_MPI;
    else if (!strcmp(name, "nccl")) *out = LQ_LINK_NCCL;
    else return lq_fail(LQ_ERR_ARG, "--transport %s: expected mpi or nccl", name);
    return LQ_OK;
}

#ifdef LQ_HAVE_NCCL
static lq_status cuda_check(cudaError_t e, const char *what) {
    return e == cudaSuccess ? LQ_OK : lq_fail(LQ_ERR_IO, "nccl link: %s: %s", what, cudaGetErrorString(e));
}
static lq_status nccl_check(ncclResult_t r, const char *what) {
    return r == ncclSuccess ? LQ_OK : lq_fail(LQ_ERR_IO, "nccl link: %s: %s", what, ncclGetErrorString(r));
}

static lq_status nccl_open(lq_hidden_link *l) {
    int devices = 0;
    lq_status st = cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    if (!st && devices == 0) st = lq_fail(LQ_ERR_UNSUPPORTED, "no CUDA device");
    /* agree before any rank blocks in ncclCommInitRank waiting for one that gave up */
    int ok = st == LQ_OK, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, l->comm);
    if (!all_ok) return st ? st : lq_fail(LQ_ERR_UNSUPPORTED, "another worker has no CUDA device");
    /* ranks on one node take devices round robin; mpirun places them node by node */
    MPI_Comm node;
    int local = 0;
    MPI_Comm_split_type(l->comm, MPI_COMM_TYPE_SHARED, l->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    if ((st = cuda_check(cudaSetDevice(local % devices), "cudaSetDevice"))) return st;
    ncclUniqueId id;
    if (l->rank == 0 && (st = nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId"))) return st;
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, l->comm);
    if ((st = nccl_check(ncclCommInitRank(&l->nccl, l->size, id, l->rank), "ncclCommInitRank")))
        return st;
    if ((st = cuda_check(cudaStreamCreate(&l->stream), "cudaStreamCreate"))) return st;
    return cuda_check(cudaMalloc((void **)&l->device, l->floats * sizeof(float)), "cudaMalloc");
}
#endif

lq_status lq_hidden_link_open(lq_link_kind kind, MPI_Comm workers, size_t floats,
                              lq_hidden_link **out) {
    *out = NULL;
    lq_hidden_link *l = calloc(1, sizeof *l);
    if (!l) return lq_fail(LQ_ERR_NOMEM, "hidden link: out of memory");
    l->kind = kind, l->comm = workers, l->floats = floats;
    MPI_Comm_rank(workers, &l->rank);
    MPI_Comm_size(workers, &l->size);
    if (floats > (size_t)0x7fffffff) {
        free(l);
        return lq_fail(LQ_ERR_RANGE, "hidden link: a window of %zu floats exceeds one message", floats);
    }
    lq_status st = LQ_OK;
    if (kind == LQ_LINK_NCCL) {
#ifdef LQ_HAVE_NCCL
        if ((st = nccl_open(l))) st = lq_fail_context(st, "--transport nccl");
#else
        st = lq_fail(LQ_ERR_UNSUPPORTED, "--transport nccl: liftquant was built without CUDA/NCCL "
                     "(configure with -DLQ_CUDA=ON where nvcc and NCCL are installed)");
#endif
    }
    if (st) {
        lq_hidden_link_close(l);
        return st;
    }
    *out = l;
    return LQ_OK;
}

lq_status lq_hidden_link_send(lq_hidden_link *l, const float *host) {
    if (l->rank + 1 >= l->size) return lq_fail(LQ_ERR_INTERNAL, "hidden link: the last worker sends nothing");
#ifdef LQ_HAVE_NCCL
    if (l->kind == LQ_LINK_NCCL) {
        lq_status st = cuda_check(cudaMemcpyAsync(l->device, host, l->floats * sizeof(float),
                                                  cudaMemcpyHostToDevice, l->stream), "copy to device");
        if (!st) st = nccl_check(ncclSend(l->device, l->floats, ncclFloat, l->rank + 1, l->nccl, l->stream),
                                 "ncclSend");
        if (!st) st = cuda_check(cudaStreamSynchronize(l->stream), "cudaStreamSynchronize");
        return st;
    }
#endif
    return MPI_Send(host, (int)l->floats, MPI_FLOAT, l->rank + 1, 0, l->comm) == MPI_SUCCESS
               ? LQ_OK
               : lq_fail(LQ_ERR_IO, "MPI_Send of hidden states failed");
}

lq_status lq_hidden_link_recv(lq_hidden_link *l, float *host) {
    if (l->rank == 0) return lq_fail(LQ_ERR_INTERNAL, "hidden link: the first worker receives nothing");
#ifdef LQ_HAVE_NCCL
    if (l->kind == LQ_LINK_NCCL) {
        lq_status st = nccl_check(ncclRecv(l->device, l->floats, ncclFloat, l->rank - 1, l->nccl,
                                           l->stream), "ncclRecv");
        if (!st) st = cuda_check(cudaMemcpyAsync(host, l->device, l->floats * sizeof(float),
                                                 cudaMemcpyDeviceToHost, l->stream), "copy to host");
        if (!st) st = cuda_check(cudaStreamSynchronize(l->stream), "cudaStreamSynchronize");
        return st;
    }
#endif
    return MPI_Recv(host, (int)l->floats, MPI_FLOAT, l->rank - 1, 0, l->comm, MPI_STATUS_IGNORE) == MPI_SUCCESS
               ? LQ_OK
               : lq_fail(LQ_ERR_IO, "MPI_Recv of hidden states failed");
}

void lq_hidden_link_close(lq_hidden_link *l) {
    if (!l) return;
#ifdef LQ_HAVE_NCCL
    if (l->device) cudaFree(l->device);
    if (l->stream) cudaStreamDestroy(l->stream);
    if (l->nccl) ncclCommDestroy(l->nccl);
#endif
    free(l);
}
