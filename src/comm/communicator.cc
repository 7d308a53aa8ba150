#include "comm/communicator.h"

namespace tpinfer {

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::AllReduce: return "all_reduce";
    case Collective::AllGather: return "all_gather";
    case Collective::Broadcast: return "broadcast";
    case Collective::SendRecv: return "send_recv";
    case Collective::Barrier: return "barrier";
    case Collective::AllToAll: return "all_to_all";
  }
  return "unknown";
}

CollectiveCounter CommStats::total() const {
  CollectiveCounter t;
  for (const CollectiveCounter& c : by_kind) t += c;
  return t;
}

}  // namespace tpinfer
