// Buffered output to a file descriptor.

#include "host.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

namespace tradecapture::host {

Output::Output() : fd_(1), owned_(false), name_("standard output") {
  buf_.reserve(threshold + (threshold >> 2));
}

Output::Output(const std::string& path) : Output() {
  if (path == "-") return;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw HostError("cannot open '" + path + "' for writing: " + std::strerror(errno),
                    exit_cantcreat);
  fd_ = fd;
  owned_ = true;
  name_ = path;
}

Output::~Output() {
  if (owned_) ::close(fd_);
}

void Output::flush() {
  const char* p = buf_.data();
  std::size_t left = buf_.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      buf_.clear();
      throw HostError("cannot write " + name_ + ": " + std::strerror(err), exit_ioerr);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  buf_.clear();
}

}  // namespace tradecapture::host
