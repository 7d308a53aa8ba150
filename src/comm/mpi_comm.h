// The `mpi` back end: one process per rank, started by `mpirun` on one host or
// many (Open MPI; any MPI-3 library should do). Every operation is made of
// non-blocking MPI calls polled with MPI_Test under the communicator's deadline
// (spin, then yield, then sleep 50 us, 1 ms after 20 ms): MPI_Isend / MPI_Irecv (all-reduce,
// all-gather, all-to-all, clock offsets), MPI_Ibcast, MPI_Ibarrier,
// MPI_Improbe + MPI_Imrecv (recv), MPI_Comm_idup.
//
// The all-reduce is our own, over MPI_Isend / MPI_Irecv. Open MPI 4.1's
// MPI_Iallreduce (libnbc), with its default algorithm choice, reaches half the
// link bandwidth between two ranks on a 1 Gbit/s link (its ring algorithm
// reaches line rate, but can only be chosen by a global MCA parameter), and
// takes about four times as long as ours for a 4-byte all-reduce between two
// ranks on one host (bench/RESULTS.md). Ours: with two ranks, or at
// most 32 KiB, every rank sends its buffer to every peer and sums (one hop);
// otherwise the local back end's algorithm, reduce-scatter to slice owners then
// all-gather back (two hops, 2 (p-1)/p x bytes per rank). Either way the sum
// runs in rank order from 0.0f, as in the local back end: every rank, and both
// back ends, get bit-identical results. Bytes are counted as in the local back
// end.
// all_gather, all_gather_bytes and all_to_all are pairwise exchanges: every
// rank sends its part to every peer directly (one hop; as many bytes per rank
// as a ring). They are used instead of MPI_Iallgatherv / MPI_Iallgather /
// MPI_Ialltoall, whose messages cannot carry the arrival stamps below.
//
// Waiting vs link (communicator.h): every message of a group collective carries
// its sender's arrival (CollectiveTimer::start_nanos(), 8 bytes) after the
// payload, in the same MPI message: a struct datatype {payload, stamp} over
// absolute addresses, so nothing is copied and no message is added (payloads
// up to 64 KiB; a larger payload sends its stamp in an 8-byte message of its
// own, because a non-contiguous datatype costs Open MPI's shared memory
// transport its single-copy path: 1 MiB all-reduces took twice as long). The
// receiver moves each peer's stamp to its own clock, and the latest of them and
// its own arrival is where its wait ends. An all-reduce stamps only its first
// piece (of 16 MiB), and with more than two ranks above 32 KiB only the
// reduce-scatter hop, after which everybody has arrived. The stamps are not
// counted in the bytes. Broadcasts (MPI_Ibcast) carry no stamp: their wait is
// 0 (the driver's broadcast of a batch, where workers idle, is not in the
// tensor-parallel compute path). A barrier is all wait; send and recv none.
// Clocks: steady clocks of different hosts are unrelated, so when the
// communicator is created rank 0 measures each peer's offset to its own clock
// (8 ping-pongs per peer, offset from the fastest round trip, error at most
// half of it: microseconds on one host, tens of microseconds over Ethernet)
// and broadcasts them. Across hosts clocks drift apart (crystals differ by up
// to tens of ppm, i.e. tens of ms per hour, less where NTP disciplines both)
// and would skew the split over a long run, so resynchronize_clocks() measures
// again (the engine calls it at every per-rank report:
// Engine::tp_rank_collectives). On one host the clock is shared and the
// offsets are measured as ~0.
//
// Deadline: when it passes, the rank asks every peer which collective it is in
// (see "Who did not arrive" below), writes
//   "<collective> #<seq> timed out after <s> s on rank <r>: rank(s) <list> did not arrive (...)"
// to stderr and calls MPI_Abort, so the whole job ends with that message: a
// stalled peer never hangs the job. Unlike the local back end there is no
// poisoned group to throw into; a timeout never returns.
// broadcast_wait has no deadline on non-root ranks (an idle worker waiting for
// the driver), nor recv_wait while no message has arrived (an idle pipeline
// stage); a peer that dies still ends the job, because mpirun (Open MPI's
// default) kills every rank when one exits abnormally.
//
// Who did not arrive: MPI cannot tell which ranks have not joined a collective.
// Each communicator therefore keeps a control channel (its own duplicate of the
// MPI communicator) on which a rank answers "which operation am I in" (its
// sequence number and kind) whenever it is polling inside any operation of this
// communicator, including while it reports its own timeout. After a deadline the
// rank asks every peer and waits up to min(timeout, 1 s) for answers. A peer
// that is behind (lower sequence number) or that does not answer — it is outside
// every operation of this communicator: computing, stalled or gone — is listed
// as "did not arrive"; the answers of the others are quoted so a mismatched
// collective (ranks in different operations) shows. This costs nothing on the
// fast path but one MPI_Test of a posted receive every few polls.
//
// Argument errors (a bad peer, a counts array of the wrong length) and a recv of
// the wrong size throw CommError on the calling rank, with the local back end's
// messages (both come from host_comm.h).
// send() is buffered: it copies the data and returns; the message is completed
// while this communicator polls later operations (and before it is destroyed).
//
// Threads: only one thread at a time may call MPI in the process (the session
// asks for MPI_THREAD_SERIALIZED). Sequence numbers count every operation on
// this rank, starting at 1, the same way as the local back end.
//
// Availability: the definitions are compiled only when CMake found MPI; it then
// defines TPINFER_HAVE_MPI for tpinfer_comm and everything that links it.
// launched_by_mpirun() is always available.
#pragma once

#include <chrono>
#include <cstdlib>
#include <memory>

#include "comm/communicator.h"

namespace tpinfer {

// True when this process was started by an MPI launcher (Open MPI's mpirun,
// a PMI / PMIx launcher such as srun or MPICH's hydra), judged from the
// environment it sets. Needs no MPI library.
inline bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

// How many ranks of this MPI job the launcher put on this host (Open MPI's
// OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's MPI_LOCALNRANKS); 0 when not launched by
// one or it does not say. Needs no MPI library.
inline int mpi_local_ranks() {
  if (!launched_by_mpirun()) return 0;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(name)) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
  return 0;
}

// Initializes MPI (MPI_THREAD_SERIALIZED) for the life of the object, unless it
// is already initialized, in which case it only checks the thread level and
// leaves finalizing to whoever initialized it. MPI can be initialized once per
// process: hold one session in main() when the process makes more than one
// communicator over its life. Throws CommError when MPI was already finalized
// or gives less than MPI_THREAD_FUNNELED.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const;
  int world_size() const;

 private:
  bool owns_ = false;
};

// A communicator over MPI_COMM_WORLD (one rank per process, ranks as in the
// world). Collective over the world: every process must call it. Initializes
// MPI if nobody did (the communicator then owns that session and finalizes MPI
// when destroyed). `timeout` bounds every operation but broadcast_wait on
// non-roots. Destroying the communicator is collective too.
std::unique_ptr<Communicator> make_mpi_communicator(std::chrono::milliseconds timeout);

// A communicator over the processes of MPI_COMM_WORLD that pass the same
// `color`, ranked by `key` (MPI_Comm_split; e.g. the tensor-parallel group of
// one pipeline stage). Collective over the world: every process calls it, each
// with its own color. MPI must be initialized and stay so while the result
// lives (keep the world communicator, or an MpiSession, alive longer).
// MPI_Comm_split has no non-blocking form, so this waits without deadline:
// call it right after a world communicator was made, when every process is
// known to have started.
std::unique_ptr<Communicator> make_mpi_split_communicator(int color, int key, std::chrono::milliseconds timeout);

#if defined(MPI_VERSION)
// The same over a given communicator (include <mpi.h> before this header to get
// it). The communicator is duplicated; `comm` stays the caller's. MPI must be
// initialized.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::chrono::milliseconds timeout);
#endif

}  // namespace tpinfer
