using OpenCvSharp;

namespace Deid.Media;

/// <summary>
/// OpenCV's own threads inside each call (resize, warp, colour conversion split across every core). A streaming
/// pipeline already keeps several CPU-heavy things in flight at once (the decoder, the detect worker, paste, the
/// encoder), so a call split again across every core only adds hand-offs: on two cores a paste's warp took 1.8 ms
/// of CPU split in two and 1.1 ms in one thread. Each call gets its share of the cores instead.
/// </summary>
public static class OpenCvThreads
{
    /// <summary>The pipeline's work: about four such things at once.</summary>
    public static int ForPipeline { get; } = Math.Max(1, Environment.ProcessorCount / 4);

    /// <summary>Sets OpenCV's threads per call to <see cref="ForPipeline"/>. Process-wide; call once at process start.</summary>
    public static void TuneForStreaming() => Cv2.SetNumThreads(ForPipeline);
}
