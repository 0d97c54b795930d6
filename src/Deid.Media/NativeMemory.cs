using System.Runtime.InteropServices;

namespace Deid.Media;

/// <summary>
/// glibc malloc tuning for a process that streams large frame buffers through many threads. By default glibc
/// raises its mmap threshold after the first large free, so later frame-sized buffers come from per-thread
/// arenas and stay resident: peak memory then creeps up with clip length. A fixed threshold sends every frame
/// buffer back to the kernel when it is freed, and two arenas bound the rest. Call once at process start.
/// Tensor work wants the opposite (see <see cref="TuneForTensors"/>); both may be called at any time and the
/// last call wins.
/// </summary>
public static class NativeMemory
{
    private const int M_MMAP_THRESHOLD = -3;
    private const int M_ARENA_MAX = -8;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

    public static void TuneForStreaming() => Set(256 * 1024);

    /// <summary>
    /// For processes that run torch networks per frame (SSD detector, model benchmarks): libtorch's CPU
    /// activations are megabytes each and the same sizes every forward. Under the 256 KiB threshold every one of
    /// them is a fresh mmap whose pages are faulted in and zeroed again (measured: SSD detection 3× slower,
    /// InceptionV3 batch 1 about 1.4× slower). 32 MiB is where glibc's own adaptive threshold stops rising, so
    /// this is its warmed-up behaviour without the creep; frame buffers are then reused from the heap too.
    /// </summary>
    public static void TuneForTensors() => Set(32 * 1024 * 1024);

    private static void Set(int mmapThreshold)
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            Mallopt(M_ARENA_MAX, 2);
            Mallopt(M_MMAP_THRESHOLD, mmapThreshold);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (e.g. musl): its allocator has no such knobs and no such creep.
        }
    }
}
