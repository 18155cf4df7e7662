//! Shared-memory pools and descriptor passing on Linux: the operating-system
//! half of the shared-memory payloads (the frames are in
//! `netcluster_proto::frame::shm`), used by the daemon and the client alike.
//!
//! A pool is a memfd created by its publisher, sized once, mapped writable
//! by the publisher only, then sealed: `F_SEAL_SHRINK | F_SEAL_GROW` (no one
//! can truncate it under a reader, so no mapping can ever raise `SIGBUS`),
//! `F_SEAL_FUTURE_WRITE` (no new writable mapping or `write()`: only the
//! publisher's existing mapping can change it) and `F_SEAL_SEAL`. The daemon
//! accepts a pool's descriptor only if [`check_pool`] finds those seals
//! (which also proves it is a memfd: other files have no seals) and maps it
//! read-only; so do subscribers. Descriptors travel with `SCM_RIGHTS` on the
//! channel's socket ([`send_with_fd`], [`recv_with_fds`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bytes::BytesMut;

/// The seals a pool must carry.
pub const REQUIRED_SEALS: libc::c_int =
    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE;
/// Most descriptors one read accepts; more in one message are closed by the
/// kernel (the protocol sends one per frame).
pub const MAX_FDS_PER_READ: usize = 4;

/// A mapping of a pool: read-only (daemon, subscribers) or writable (its
/// publisher). Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory that lives until drop; readers
// only ever copy from it or hand out slices the owner keeps alive.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent readers of shared memory are fine.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, read-only or writable.
    pub fn map(fd: &OwnedFd, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty pool"));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping chosen by the kernel; no Rust memory is
        // touched. The result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if empty (never, once mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `offset`, which the caller has bounds-checked
    /// (`check_slot`). Panics if they are out of bounds.
    ///
    /// The bytes are shared memory: their publisher's own mapping could
    /// still change them (the protocol forbids it until the slot is
    /// released, and the library never does), never any other process.
    pub fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset.checked_add(len).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds (checked above) of a mapping alive for `&self`;
        // the seals forbid shrinking the file, so the pages stay valid.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }
    }

    /// The `len` bytes at `offset` of a writable mapping, to fill in place
    /// (a loan). Panics if out of bounds.
    ///
    /// # Safety
    ///
    /// The mapping must be writable (the publisher's own), and the caller
    /// must hold these bytes exclusively for as long as the slice lives: no
    /// other slice of them may exist meanwhile (the publisher's allocator
    /// gives each slot to one owner only).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset.checked_add(len).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds (checked above) of a mapping alive for `&self`;
        // writable and exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }

    /// Copies `src` to `offset` of a writable mapping. Panics if out of
    /// bounds.
    pub fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset.checked_add(src.len()).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds of a writable mapping alive for `&self`; the
        // caller owns this slot (nobody reads it until it is published).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; no slice outlives
        // `&self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Creates a sealed pool of `size` bytes: its descriptor and the
/// publisher's writable mapping (made before the write seal, which forbids
/// any later one).
pub fn create_pool(size: usize) -> io::Result<(OwnedFd, Mapping)> {
    // SAFETY: the name is a valid C string; the result is checked.
    let fd = unsafe {
        libc::memfd_create(
            c"netcluster-pool".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscalls on our descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let map = Mapping::map(&fd, size, true)?;
    let seals = REQUIRED_SEALS | libc::F_SEAL_SEAL;
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, map))
}

/// Checks a descriptor a client passed as its pool: a memfd carrying
/// [`REQUIRED_SEALS`], a regular file of `size` bytes (the size the client
/// announced) no larger than `max`. The error says what is wrong.
pub fn check_pool(fd: &OwnedFd, size: u64, max: u64) -> Result<(), String> {
    // SAFETY: plain query on a descriptor we own.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err("the descriptor is not a sealable memfd (F_GET_SEALS failed)".into());
    }
    if seals & REQUIRED_SEALS != REQUIRED_SEALS {
        return Err(format!(
            "the memfd lacks seals: it must carry F_SEAL_SHRINK, F_SEAL_GROW and \
             F_SEAL_FUTURE_WRITE (has 0x{seals:x})"
        ));
    }
    // SAFETY: `st` is written by fstat before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(format!("fstat failed: {}", io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("the descriptor is not a regular memfd".into());
    }
    let real = st.st_size as u64;
    if real != size {
        return Err(format!(
            "the pool is {real} bytes, not the {size} bytes the frame announced"
        ));
    }
    if size == 0 || size > max {
        return Err(format!(
            "a pool of {size} bytes is refused: this channel's shmbytes allows 1..={max}"
        ));
    }
    Ok(())
}

/// Sends `bytes` with `fd` attached (`SCM_RIGHTS`) on the stream socket
/// `sock`, without waiting. Returns how many bytes went (the descriptor
/// goes with the first of them); `WouldBlock` when none did.
pub fn send_with_fd(sock: RawFd, bytes: &[u8], fd: RawFd) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut _,
        iov_len: bytes.len(),
    };
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: computing a size, no memory access.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // SAFETY: msghdr is plain data; zeroed then filled.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer (64 bytes) holds one cmsghdr with one fd;
    // CMSG_FIRSTHDR points into it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
    // SAFETY: every pointer in `msg` is valid for the call.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Receives into `buf`'s spare capacity from the stream socket `sock`
/// without waiting, appending any descriptors that came with the bytes to
/// `fds` (close-on-exec; at most [`MAX_FDS_PER_READ`] per call, the kernel
/// closes any more). `Ok(0)`: the peer closed.
pub fn recv_with_fds(sock: RawFd, buf: &mut BytesMut, fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let dst = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain data; zeroed then filled.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: computing a size.
    let space =
        unsafe { libc::CMSG_SPACE((MAX_FDS_PER_READ * std::mem::size_of::<RawFd>()) as u32) };
    debug_assert!(space as usize <= std::mem::size_of_val(&cbuf));
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at valid buffers: the spare capacity of `buf`
    // and `cbuf`.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walks the control messages the kernel wrote into `cbuf`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        // The kernel initialized the first `n` spare bytes.
        buf.set_len(buf.len() + n as usize);
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn pool_is_sealed_and_passes_over_a_socket() {
        let (fd, map) = create_pool(1 << 16).unwrap();
        map.write(100, b"hello");
        check_pool(&fd, 1 << 16, 1 << 20).unwrap();
        assert!(check_pool(&fd, 1 << 16, 1 << 10).is_err(), "over the bound");
        assert!(check_pool(&fd, 1 << 15, 1 << 20).is_err(), "wrong size");
        // No one may map it writable any more.
        assert!(Mapping::map(&fd, 1 << 16, true).is_err());
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(
            send_with_fd(a.as_raw_fd(), b"pool", fd.as_raw_fd()).unwrap(),
            4
        );
        let mut buf = BytesMut::with_capacity(64);
        let mut fds = Vec::new();
        assert_eq!(recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds).unwrap(), 4);
        assert_eq!((&buf[..], fds.len()), (&b"pool"[..], 1));
        let ro = Mapping::map(&fds[0], 1 << 16, false).unwrap();
        assert_eq!(ro.slice(100, 5), b"hello");
    }

    #[test]
    fn refuses_what_is_not_a_sealed_memfd() {
        let f: OwnedFd = tempfile::tempfile().unwrap().into();
        assert!(check_pool(&f, 0, 1 << 20)
            .unwrap_err()
            .contains("not a sealable memfd"));
        // SAFETY: plain syscall; checked.
        let raw = unsafe { libc::memfd_create(c"x".as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(raw >= 0);
        // SAFETY: fresh descriptor.
        let m = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscall.
        unsafe { libc::ftruncate(m.as_raw_fd(), 4096) };
        assert!(check_pool(&m, 4096, 1 << 20)
            .unwrap_err()
            .contains("lacks seals"));
    }
}
