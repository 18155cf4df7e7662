/*
 * bcryptprimitives.dll for Wine 8, a test aid only (scripts/wine-test.sh).
 *
 * Rust's standard library (1.78 and later) imports ProcessPrng from
 * bcryptprimitives.dll for its random numbers; Wine 8 has no such DLL, so
 * every Rust .exe fails to start under it. This DLL exports ProcessPrng and
 * fills the buffer with RtlGenRandom (exported by advapi32 as
 * SystemFunction036), which Wine does implement. Real Windows ships its own
 * bcryptprimitives.dll: never install this one there.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *            processprng_shim.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    /* RtlGenRandom takes a 32-bit length: feed it in chunks. */
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
