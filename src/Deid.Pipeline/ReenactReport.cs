using System.Text.Json;
using Deid.Faces;

namespace Deid.Pipeline;

/// <summary>
/// Everything that describes one reenactment job: plain data (no delegates), like <see cref="AnonymizeOptions"/>.
/// The identity is the still's largest face; <see cref="Latent"/> gives the weights and the W smoothing (its
/// <see cref="LatentOptions.Identity"/> is replaced by the still).
/// </summary>
public sealed record ReenactOptions
{
    /// <summary>Write G's aligned heads (G-sized frames) instead of pasting them into the still.</summary>
    public bool Crop { get; init; }
    /// <summary>Output picture size (the still is resized to it); null: the still's own size.</summary>
    public int? Width { get; init; }
    public int? Height { get; init; }
    /// <summary>The driving track to follow (ids as the tracker numbers them, see the report); null: the largest face.</summary>
    public int? DrivingTrack { get; init; }
    public string Device { get; init; } = "cpu";
    public int Workers { get; init; } = Environment.ProcessorCount;
    public int BatchSize { get; init; } = 8;
    /// <summary>0 (default): batches are cut by count only, so the same inputs give the same pixels; &gt; 0 also flushes a batch after that wait.</summary>
    public int BatchTimeoutMs { get; init; }
    /// <summary>Frames an undetected driving face is still followed from its extrapolated landmarks before the head is held.</summary>
    public int MaxMissingFrames { get; init; } = 2;
    public DetectorKind Detector { get; init; } = DetectorKind.Hog;
    public float MinConfidence { get; init; } = Deid.Models.FaceApi.SsdMobilenetv1.DefaultMinConfidence;
    public LatentOptions Latent { get; init; } = new();
}

/// <summary>Where the head went in one output frame: centre of the aligned square, its side in pixels and its roll.</summary>
public sealed record Placement(double X, double Y, double Side, double AngleDegrees, bool Clamped = false);

public enum ReenactHead
{
    /// <summary>The driving face was there (detected, or followed from its last landmarks): a new head was drawn.</summary>
    Generated,
    /// <summary>The driving face was lost: the last head is shown again, where it last was.</summary>
    Held,
    /// <summary>No driving face yet: the still is shown as it is (its aligned crop with --crop).</summary>
    None,
}

/// <param name="Tracked">The driving face was not detected here but followed from its extrapolated landmarks.</param>
/// <param name="WChange">L2 distance of this frame's w to the previous generated frame's (null: first head, or none drawn).</param>
/// <param name="IdentitySimilarity">Independent recognizer: cosine of the generated head to the still's face.</param>
/// <param name="LandmarkDistance">Mean distance (crop pixels) between the driving face's 68 landmarks and dlib's on the generated head, both in the aligned crop; null when dlib finds no face in the head.</param>
public sealed record ReenactFrame(long Index, double Time, ReenactHead Head, int? DrivingTrack, bool Tracked,
    double? WChange, double? IdentitySimilarity, double? LandmarkDistance, Placement? Driving, Placement? Paste);

/// <summary>A <see cref="ReenactFrame"/> in the report's spool: index, time, head, a byte of which optional fields follow, then those.</summary>
internal sealed class ReenactFrameCodec : IFrameCodec<ReenactFrame>
{
    private const byte HasTrack = 1, IsTracked = 2, HasWChange = 4, HasIdentity = 8, HasLandmarks = 16, HasDriving = 32, HasPaste = 64;

    public static int MaxSize(ReenactFrame frame) => 8 + 8 + 1 + 1 + 4 + 3 * 8 + 2 * (4 * 8 + 1);

    public static int Write(ReenactFrame f, Span<byte> to)
    {
        var s = new SpoolWriter(to);
        s.Int64(f.Index);
        s.Double(f.Time);
        s.Byte((byte)f.Head);
        s.Byte((byte)((f.DrivingTrack is null ? 0 : HasTrack) | (f.Tracked ? IsTracked : 0) | (f.WChange is null ? 0 : HasWChange)
            | (f.IdentitySimilarity is null ? 0 : HasIdentity) | (f.LandmarkDistance is null ? 0 : HasLandmarks)
            | (f.Driving is null ? 0 : HasDriving) | (f.Paste is null ? 0 : HasPaste)));
        if (f.DrivingTrack is int track) s.Int32(track);
        if (f.WChange is double w) s.Double(w);
        if (f.IdentitySimilarity is double id) s.Double(id);
        if (f.LandmarkDistance is double lm) s.Double(lm);
        if (f.Driving is { } driving) WritePlacement(ref s, driving);
        if (f.Paste is { } paste) WritePlacement(ref s, paste);
        return s.Length;
    }

    private static void WritePlacement(ref SpoolWriter s, Placement p)
    {
        s.Double(p.X);
        s.Double(p.Y);
        s.Double(p.Side);
        s.Double(p.AngleDegrees);
        s.Bool(p.Clamped);
    }

    public static ReenactFrame Read(ReadOnlySpan<byte> from)
    {
        var s = new SpoolReader(from);
        var index = s.Int64();
        var time = s.Double();
        var head = (ReenactHead)s.Byte();
        var flags = s.Byte();
        int? track = (flags & HasTrack) != 0 ? s.Int32() : null;
        double? wChange = (flags & HasWChange) != 0 ? s.Double() : null;
        double? identity = (flags & HasIdentity) != 0 ? s.Double() : null;
        double? landmarks = (flags & HasLandmarks) != 0 ? s.Double() : null;
        var driving = (flags & HasDriving) != 0 ? ReadPlacement(ref s) : null;
        var paste = (flags & HasPaste) != 0 ? ReadPlacement(ref s) : null;
        return new ReenactFrame(index, time, head, track, (flags & IsTracked) != 0, wChange, identity, landmarks, driving, paste);
    }

    private static Placement ReadPlacement(ref SpoolReader s) => new(s.Double(), s.Double(), s.Double(), s.Double(), s.Bool());
}

/// <summary>
/// What <c>deid reenact</c> did, per frame and in total. As in <see cref="AnonymizeReport"/>, the per-frame records
/// live in a temp-file spool, not in memory (a long driving clip has one per frame), and the totals are kept as they
/// are added; dispose the report to release the spool at once.
/// </summary>
public sealed class ReenactReport : IDisposable
{
    private readonly FrameSpool<ReenactFrame, ReenactFrameCodec> _frames = new();
    private readonly List<string> _warnings = [];
    private long _generated, _held, _noHead, _tracked;
    private Mean _wChange, _identitySimilarity, _landmarkDistance;

    public string Still { get; init; } = "";
    public string Driving { get; init; } = "";
    public string Output { get; init; } = "";
    public bool Crop { get; init; }
    public int Width { get; init; }
    public int Height { get; init; }
    public int CropSize { get; init; }
    public FaceBox StillFace { get; init; }
    public int StillFaces { get; init; }
    public DetectorKind Detector { get; init; }
    public IReadOnlyList<string> RandomWeights { get; internal set; } = [];
    public IReadOnlyDictionary<string, string> ModelFiles { get; internal set; } = new Dictionary<string, string>();
    public InferenceStats? Inference { get; internal set; }
    public TimeSpan Elapsed { get; internal set; }
    /// <summary>Every frame's record, in order, read back from the spool on each enumeration.</summary>
    public IEnumerable<ReenactFrame> FrameRecords => _frames.Read();
    public IReadOnlyList<string> Warnings => _warnings;

    public long Frames => _frames.Count;
    public long Generated => _generated;
    public long Held => _held;
    public long NoHead => _noHead;
    public long Tracked => _tracked;
    public double Fps => Elapsed.TotalSeconds > 0 ? Frames / Elapsed.TotalSeconds : 0;
    public double? MeanWChange => _wChange.Value;
    public double? MeanIdentitySimilarity => _identitySimilarity.Value;
    public double? MeanLandmarkDistance => _landmarkDistance.Value;

    /// <summary>
    /// The mean of the values present, summed in frame order from zero and divided by their count: bit for bit what
    /// LINQ's Average over the list of them gave when the report kept its frames in memory.
    /// </summary>
    private struct Mean
    {
        private double _sum;
        public long Count { get; private set; }
        public void Add(double? v)
        {
            if (v is not double d) return;
            _sum += d;
            Count++;
        }
        public readonly double? Value => Count == 0 ? null : Math.Round(_sum / Count, 6);
    }

    internal void AddFrame(ReenactFrame frame)
    {
        _frames.Add(frame);
        switch (frame.Head)
        {
            case ReenactHead.Generated: _generated++; break;
            case ReenactHead.Held: _held++; break;
            case ReenactHead.None: _noHead++; break;
        }
        if (frame.Tracked) _tracked++;
        _wChange.Add(frame.WChange);
        _identitySimilarity.Add(frame.IdentitySimilarity);
        _landmarkDistance.Add(frame.LandmarkDistance);
    }

    public void Dispose() => _frames.Dispose();
    internal void AddWarning(string warning) { if (!_warnings.Contains(warning)) _warnings.Add(warning); }

    /// <summary>Through a temp file and a rename, so a reader never sees half a report.</summary>
    public void WriteJson(string path) => JsonReportFile.Write(path, Write);

    public string ToJson() => JsonReportFile.ToJson(Write);

    private static void Num(Utf8JsonWriter w, string name, double? v, int digits = 6)
    {
        if (v is double d) w.WriteNumber(name, Math.Round(d, digits));
        else w.WriteNull(name);
    }

    private static void WritePlacement(Utf8JsonWriter w, string name, Placement? p)
    {
        if (p is null) { w.WriteNull(name); return; }
        w.WriteStartObject(name);
        w.WriteNumber("x", Math.Round(p.X, 2));
        w.WriteNumber("y", Math.Round(p.Y, 2));
        w.WriteNumber("side", Math.Round(p.Side, 2));
        w.WriteNumber("angle", Math.Round(p.AngleDegrees, 3));
        if (p.Clamped) w.WriteBoolean("clamped", true);
        w.WriteEndObject();
    }

    private void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("kind", "reenact");
        w.WriteString("still", Still);
        w.WriteString("driving", Driving);
        w.WriteString("output", Output);
        w.WriteString("layout", Crop ? "crop" : "still");
        w.WriteNumber("width", Width);
        w.WriteNumber("height", Height);
        w.WriteNumber("cropSize", CropSize);
        w.WriteString("detector", Detector.ToString().ToLowerInvariant());
        w.WriteStartObject("stillFace");
        w.WriteStartArray("box");
        foreach (var v in new[] { StillFace.Left, StillFace.Top, StillFace.Right, StillFace.Bottom }) w.WriteNumberValue(Math.Round(v, 1));
        w.WriteEndArray();
        w.WriteNumber("facesInStill", StillFaces);
        w.WriteEndObject();
        w.WriteString("recognizer", OnnxFaceRecognizer.RelativePath);
        JsonReportFile.WriteWeights(w, RandomWeights, ModelFiles);

        w.WriteStartObject("totals");
        w.WriteNumber("frames", Frames);
        w.WriteNumber("generated", Generated);
        w.WriteNumber("held", Held);
        w.WriteNumber("noHead", NoHead);
        w.WriteNumber("tracked", Tracked);
        Num(w, "meanWChange", MeanWChange);
        Num(w, "meanIdentitySimilarity", MeanIdentitySimilarity);
        Num(w, "meanLandmarkDistance", MeanLandmarkDistance);
        w.WriteNumber("framesWithGeneratedLandmarks", _landmarkDistance.Count);
        w.WriteNumber("elapsedSeconds", Math.Round(Elapsed.TotalSeconds, 3));
        w.WriteNumber("fps", Math.Round(Fps, 3));
        w.WriteEndObject();
        if (Inference is { } inf)
        {
            w.WriteStartObject("inference");
            w.WriteNumber("batches", inf.Batches);
            w.WriteNumber("crops", inf.Crops);
            w.WriteNumber("busySeconds", Math.Round(inf.Busy.TotalSeconds, 3));
            w.WriteNumber("idleSeconds", Math.Round(inf.Idle.TotalSeconds, 3));
            w.WriteEndObject();
        }
        w.WriteStartArray("warnings");
        foreach (var s in _warnings) w.WriteStringValue(s);
        w.WriteEndArray();

        w.WriteStartArray("frames");
        foreach (var f in _frames.Read())
        {
            w.WriteStartObject();
            w.WriteNumber("index", f.Index);
            w.WriteNumber("time", Math.Round(f.Time, 6));
            w.WriteString("head", f.Head.ToString().ToLowerInvariant());
            w.WriteBoolean("found", f.Head == ReenactHead.Generated);
            w.WriteBoolean("held", f.Head == ReenactHead.Held);
            if (f.DrivingTrack is int t) w.WriteNumber("drivingTrack", t); else w.WriteNull("drivingTrack");
            w.WriteBoolean("tracked", f.Tracked);
            Num(w, "wChange", f.WChange);
            Num(w, "identitySimilarity", f.IdentitySimilarity);
            Num(w, "landmarkDistance", f.LandmarkDistance, 3);
            WritePlacement(w, "driving", f.Driving);
            WritePlacement(w, "paste", f.Paste);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
