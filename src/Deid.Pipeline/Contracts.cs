using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>An FFHQ-aligned crop (CropSize²) of one tracked face in one frame.</summary>
public sealed record FaceCrop(long FrameIndex, int TrackId, Mat Crop);

/// <summary>
/// What happens to aligned face crops. Blur, pixelate and passthrough implement it here; the neural
/// replacement of a later issue implements it too, so nothing else in the pipeline has to change.
/// </summary>
public interface IFaceStage : IDisposable
{
    string Name { get; }
    int BatchSize { get; }
    /// <summary>One output crop per input, same size; may be the input Mat, modified in place.</summary>
    IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct);
}

public enum AnonymizeMode { Blur, Pixelate, Passthrough }

public sealed record AnonymizeOptions
{
    public AnonymizeMode Mode { get; init; } = AnonymizeMode.Blur;
    public int Workers { get; init; } = Environment.ProcessorCount;
    public int BatchSize { get; init; } = 8;
    public int CropSize { get; init; } = 256;
    public string Device { get; init; } = "cpu";
    public int MaxMissingFrames { get; init; } = 10;
    /// <summary>Face detector of the detect stage; landmarks always come from dlib's shape predictor.</summary>
    public DetectorKind Detector { get; init; } = DetectorKind.Hog;
    /// <summary>
    /// SSD face score threshold (ssd and both; face-api.js's default 0.5). Lower finds more faces, false ones included:
    /// for privacy, a false face costs a blurred patch, a missed one an exposed face.
    /// </summary>
    public float MinConfidence { get; init; } = Deid.Models.FaceApi.SsdMobilenetv1.DefaultMinConfidence;
    /// <summary>Where the SSD detector's face-api.js weights are (default: the model store's face-api folder).</summary>
    public string? ModelDir { get; init; }
    /// <summary>Overrides <see cref="Mode"/>: the pipeline owns and disposes the stage it creates.</summary>
    public Func<IFaceStage>? StageFactory { get; init; }
}

public sealed record PipelineProgress(long FramesDone, long? TotalFrames, double Fps);

/// <summary>How a face in one output frame was handled.</summary>
public enum FaceHandling
{
    /// <summary>Detected in this frame, aligned, processed by the face stage and pasted back.</summary>
    Replaced,
    /// <summary>Not detected in this frame; processed from its track's extrapolated landmarks.</summary>
    Tracked,
    /// <summary>Could not be processed (lost too long, no landmarks, alignment/stage/paste failure): its region was blurred.</summary>
    FallbackBlurred,
}

public static class FaceHandlingNames
{
    public static string ToJsonName(this FaceHandling h) => h switch
    {
        FaceHandling.Replaced => "replaced",
        FaceHandling.Tracked => "tracked",
        _ => "fallback-blurred",
    };
}

/// <summary>Bad pipeline input or configuration, with a one-line message for the CLI.</summary>
public class PipelineException(string message, Exception? inner = null) : Exception(message, inner);
