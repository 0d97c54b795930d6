using System.Runtime.InteropServices;

namespace Deid.Media;

/// <summary>
/// glibc malloc tuning for a process that streams large frame buffers through many threads. By default glibc
/// raises its mmap threshold after the first large free, so later frame-sized buffers come from per-thread
/// arenas and stay resident: peak memory then creeps up with clip length. A fixed threshold sends every frame
/// buffer back to the kernel when it is freed, and two arenas bound the rest. Call once at process start.
/// </summary>
public static class NativeMemory
{
    private const int M_MMAP_THRESHOLD = -3;
    private const int M_ARENA_MAX = -8;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

    public static void TuneForStreaming()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            Mallopt(M_ARENA_MAX, 2);
            Mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (e.g. musl): its allocator has no such knobs and no such creep.
        }
    }
}
