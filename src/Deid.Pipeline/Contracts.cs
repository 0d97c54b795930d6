using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// An FFHQ-aligned crop (CropSize²) of one tracked face in one frame, with the frame's time (seconds) and the face's 68
/// landmarks in crop pixels.
/// </summary>
public sealed record FaceCrop(long FrameIndex, int TrackId, Mat Crop, double Time = 0, Point2f[]? Landmarks = null);

/// <summary>
/// What happens to aligned face crops. Blur, pixelate and passthrough implement it, and so does the neural
/// replacement (<see cref="LatentFaceStage"/>): nothing else in the pipeline depends on which one runs.
/// </summary>
public interface IFaceStage : IDisposable
{
    string Name { get; }
    int BatchSize { get; }

    /// <summary>
    /// True when the output is a different person (neural replacement): such crops are colour-matched to the frame and
    /// audited for identity leaks; obfuscated crops (blur) are feathered in as they are.
    /// </summary>
    bool ReplacesIdentity => false;

    /// <summary>
    /// The aligned crop size this stage works at when the job names none. Blur's output has no detail finer than a
    /// 64² crop holds, so it needs no more; anything that draws or keeps detail needs the full 256².
    /// </summary>
    int CropSize => 256;

    /// <summary>
    /// True when the output crops carry no detail finer than a few of their pixels (a blur), so paste may enlarge
    /// them coarsely (<see cref="Deid.Faces.FacePaster.Paste"/>'s smooth).
    /// </summary>
    bool SmoothOutput => false;

    /// <summary>One output crop per input, same size; may be the input Mat, modified in place. Crops of one track come in frame order.</summary>
    IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct);

    /// <summary>
    /// Draws these faces again with a stronger push away from the source identity, for faces the leak audit found
    /// still recognisable; null when the stage has no such lever (the audit then blurs them).
    /// </summary>
    IReadOnlyList<Mat>? Reinforce(IReadOnlyList<FaceCrop> batch, CancellationToken ct) => null;

    /// <summary>The independent recognizer's embedding of the identity a track was given (null: none, or not known).</summary>
    float[]? TargetEmbedding(int trackId) => null;

    /// <summary>How each track's identity was chosen, for the report.</summary>
    IReadOnlyList<TrackIdentity> Identities => [];
}

public enum AnonymizeMode { Blur, Pixelate, Passthrough, Latent }

/// <summary>
/// Everything that describes one anonymization job. Plain data (no delegates), so a batch front end can store,
/// compare and ship it; what is loaded to run it lives in <see cref="DeidEngine"/>.
/// </summary>
public sealed record AnonymizeOptions
{
    public AnonymizeMode Mode { get; init; } = AnonymizeMode.Blur;
    public int Workers { get; init; } = Environment.ProcessorCount;
    public int BatchSize { get; init; } = 8;
    /// <summary>
    /// 0 (default): batches are cut by crop and frame counts only, so a clip always gives the same pixels. Above 0, a
    /// short batch also goes once its first crop has waited this long (live sources), at the price of that determinism.
    /// </summary>
    public int BatchTimeoutMs { get; init; }
    /// <summary>Aligned crop size; null: the face stage's own (<see cref="IFaceStage.CropSize"/>). Latent mode uses G's output size.</summary>
    public int? CropSize { get; init; }
    public string Device { get; init; } = "cpu";
    public int MaxMissingFrames { get; init; } = 10;
    /// <summary>Rough budget for decoded frames in flight between the stages, in MiB: sets the channel depths.</summary>
    public int FrameMemoryMiB { get; init; } = 512;
    /// <summary>Face detector of the detect stage; landmarks always come from dlib's shape predictor.</summary>
    public DetectorKind Detector { get; init; } = DetectorKind.Hog;
    /// <summary>
    /// SSD face score threshold (ssd and both; face-api.js's default 0.5). Lower finds more faces, false ones included:
    /// for privacy, a false face costs a blurred patch, a missed one an exposed face.
    /// </summary>
    public float MinConfidence { get; init; } = Deid.Models.FaceApi.SsdMobilenetv1.DefaultMinConfidence;
    /// <summary>Where the model weights are (default: the model store, <c>$DEID_MODELS</c> or models/).</summary>
    public string? ModelDir { get; init; }
    /// <summary>How the output is encoded: subtitles kept or dropped, audio copied or transcoded, codec settings.</summary>
    public Deid.Media.VideoWriterOptions Output { get; init; } = new();
    /// <summary>Latent mode: identities, weights, smoothing.</summary>
    public LatentOptions Latent { get; init; } = new();
    /// <summary>
    /// Run the leak audit (independent recognizer, output vs source face) on every face. Null: on exactly when the face
    /// stage replaces identities.
    /// </summary>
    public bool? Audit { get; init; }
}

/// <summary>Latent mode's part of a job.</summary>
public sealed record LatentOptions
{
    /// <summary><c>seed:N</c> (a synthetic person drawn by G) or the path of a photo; one fixed identity per track for the whole clip.</summary>
    public string Identity { get; init; } = "seed:0";
    /// <summary>Track id → photo (or <c>seed:N</c>) pinned to that track.</summary>
    public IReadOnlyDictionary<int, string> TrackIdentities { get; init; } = new Dictionary<int, string>();
    /// <summary>Truncation ψ of synthetic identities (1: none).</summary>
    public double Truncation { get; init; } = 0.7;
    /// <summary>
    /// A synthetic candidate is rejected when the independent recognizer puts it within this margin of the same-person
    /// threshold of any face in the clip (cosine ≥ threshold − margin); the next seed is tried.
    /// </summary>
    public double IdentityMargin { get; init; } = 0.1;
    /// <summary>Synthetic candidates tried per track before the least similar one is taken (with a warning).</summary>
    public int MaxCandidates { get; init; } = 16;
    /// <summary>Frames sampled from the clip before the run, whose faces synthetic candidates must not resemble.</summary>
    public int PrescanFrames { get; init; } = 8;
    /// <summary>One-Euro smoothing of each track's w over time (on top of the landmark smoothing).</summary>
    public bool WSmoothing { get; init; } = true;
    public double WMinCutoff { get; init; } = 1.0;
    public double WBeta { get; init; } = 0.5;
    /// <summary>
    /// The audit's second attempt moves the identity code this far further from the source face's own E_id code:
    /// id' = normalize(id + k (id − id_source)).
    /// </summary>
    public double IdentityPush { get; init; } = 1.0;
    public Deid.Models.LatentWeightsSpec Weights { get; init; } = new();
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
