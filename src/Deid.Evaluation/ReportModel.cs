using System.Text.Json;
using System.Text.Json.Serialization;

namespace Deid.Evaluation;

public sealed record BoxJson(float Left, float Top, float Right, float Bottom, float Score);
public sealed record PoseJson(double Yaw, double Pitch, double Roll)
{
    public static PoseJson? From(Pose? p) => p is { } v ? new PoseJson(Math.Round(v.Yaw, 3), Math.Round(v.Pitch, 3), Math.Round(v.Roll, 3)) : null;
}

/// <summary>One source face of one evaluated frame, with its matched output face (if any). Null = undefined.</summary>
public sealed class FaceMetrics
{
    public int Track { get; set; }
    public BoxJson? SourceBox { get; set; }
    public BoxJson? OutputBox { get; set; }
    public bool OutputDetected { get; set; }
    /// <summary>Cosine(output, target).</summary>
    public double? IdentityToTarget { get; set; }
    /// <summary>Cosine(output, source); measured at the source's alignment when the output face is not detected.</summary>
    public double? Leak { get; set; }
    public bool LeakAtSourceBox { get; set; }
    public bool? LeakAboveThreshold { get; set; }
    /// <summary>Cosine(output face, previous evaluated frame's output face) within the track.</summary>
    public double? Coherence { get; set; }
    /// <summary>Cosine(output face, the track's mean output identity).</summary>
    public double? ToClipMean { get; set; }
    /// <summary>Mean landmark distance in the source's FFHQ crop, in pixels of a crop of ExpressionCropSize.</summary>
    public double? ExpressionPx { get; set; }
    /// <summary>ExpressionPx / crop size.</summary>
    public double? ExpressionNorm { get; set; }
    public PoseJson? SourcePose { get; set; }
    public PoseJson? OutputPose { get; set; }
    public PoseJson? PoseError { get; set; }
    /// <summary>Landmark second difference / inter-ocular distance.</summary>
    public double? JitterSource { get; set; }
    public double? JitterOutput { get; set; }
}

public sealed class FrameMetrics
{
    public long Index { get; set; }
    public double Time { get; set; }
    public int SourceFaces { get; set; }
    public int OutputFaces { get; set; }
    public int Matched { get; set; }
    public int Missing { get; set; }
    public int Extra { get; set; }
    public List<FaceMetrics> Faces { get; set; } = [];
}

public sealed class TrackSummary
{
    public int Track { get; set; }
    public int Frames { get; set; }
    public int OutputDetected { get; set; }
    public Dictionary<string, MeanStd> Metrics { get; set; } = [];
    public double? LeakFraction { get; set; }
}

public sealed class CoverageSummary
{
    public long FramesEvaluated { get; set; }
    public long FramesWithSourceFace { get; set; }
    public long FramesWithOutputFace { get; set; }
    public long SourceFaces { get; set; }
    public long OutputFaces { get; set; }
    public long MatchedFaces { get; set; }
    /// <summary>Source faces with no output face at the same place (e.g. blurred beyond detection).</summary>
    public long MissingFaces { get; set; }
    /// <summary>Output faces with no source face at the same place.</summary>
    public long ExtraFaces { get; set; }
    public double? OutputDetectionRate { get; set; }
}

public sealed class PairMetrics
{
    public string Name { get; set; } = "";
    public string IdentityImage { get; set; } = "";
    public string AttributeImage { get; set; } = "";
    public string OutputImage { get; set; } = "";
    public bool OutputDetected { get; set; }
    public double? IdentityToTarget { get; set; }
    public double? Leak { get; set; }
    public bool? LeakAboveThreshold { get; set; }
    public double? ExpressionPx { get; set; }
    public double? ExpressionNorm { get; set; }
    public PoseJson? AttributePose { get; set; }
    public PoseJson? OutputPose { get; set; }
    public PoseJson? PoseError { get; set; }
    public string? Note { get; set; }
}

public sealed class ToolVersions
{
    public string Deid { get; set; } = "";
    public string? Ffmpeg { get; set; }
    public string OnnxRuntime { get; set; } = "";
    public string Runtime { get; set; } = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription;
    public Dictionary<string, ModelInfo> Models { get; set; } = [];
}

public sealed record ModelInfo(string Path, string Sha256);

public sealed class EvaluationReport
{
    public string Kind { get; set; } = "video";
    public DateTimeOffset Created { get; set; } = DateTimeOffset.UtcNow;
    public string? Source { get; set; }
    public string? Output { get; set; }
    public string? Target { get; set; }
    public string? PairsDirectory { get; set; }
    public int Stride { get; set; } = 1;
    public int ExpressionCropSize { get; set; } = 256;
    public ToolVersions Tools { get; set; } = new();
    public ThresholdInfo? Threshold { get; set; }
    /// <summary>Mean ± std over every evaluated face of every frame (or every pair).</summary>
    public Dictionary<string, MeanStd> Summary { get; set; } = [];
    /// <summary>Fraction of evaluated faces whose leak similarity is at or above the same-person threshold.</summary>
    public double? LeakFraction { get; set; }
    public CoverageSummary? Coverage { get; set; }
    public List<TrackSummary> Tracks { get; set; } = [];
    public List<FrameMetrics> Frames { get; set; } = [];
    public List<PairMetrics> Pairs { get; set; } = [];
    public List<string> Plots { get; set; } = [];
    public List<string> Warnings { get; set; } = [];

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);
    public static EvaluationReport FromJson(string json) => JsonSerializer.Deserialize<EvaluationReport>(json, JsonOptions)!;

    /// <summary>Metric keys in Summary / Tracks.</summary>
    public static class Keys
    {
        public const string IdentityToTarget = "identityToTarget";
        public const string Leak = "leak";
        public const string Coherence = "coherence";
        public const string ToClipMean = "toClipMean";
        public const string ExpressionPx = "expressionPx";
        public const string ExpressionNorm = "expressionNorm";
        public const string YawError = "yawError";
        public const string PitchError = "pitchError";
        public const string RollError = "rollError";
        public const string JitterSource = "jitterSource";
        public const string JitterOutput = "jitterOutput";
    }
}
