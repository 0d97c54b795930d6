using System.Text.Json;
using Deid.Faces;

namespace Deid.Pipeline;

public sealed record FaceRecord(int TrackId, FaceBox Box, FaceHandling Handling, FaceAudit? Audit = null);

/// <param name="Damaged">The decoder reported errors in this picture (or in the ones it was predicted from): it was blurred whole.</param>
public sealed record FrameRecord(long Index, double Time, IReadOnlyList<FaceRecord> Faces, bool Damaged = false);

/// <summary>A <see cref="FrameRecord"/> in the report's spool: the frame's fields, then each face (box, handling, audit if any).</summary>
internal sealed class FrameRecordCodec : IFrameCodec<FrameRecord>
{
    public static int MaxSize(FrameRecord frame) => 21 + frame.Faces.Count * 60;

    public static int Write(FrameRecord frame, Span<byte> to)
    {
        var s = new SpoolWriter(to);
        s.Int64(frame.Index);
        s.Double(frame.Time);
        s.Int32(frame.Faces.Count);
        s.Bool(frame.Damaged);
        foreach (var f in frame.Faces)
        {
            s.Int32(f.TrackId);
            foreach (var v in (ReadOnlySpan<float>)[f.Box.Left, f.Box.Top, f.Box.Right, f.Box.Bottom, f.Box.Score]) s.Single(v);
            s.Byte((byte)f.Handling);
            if (f.Audit is not { } a) { s.Byte(0); continue; }
            s.Byte((byte)(1 | (a.SimilarityToTarget is null ? 0 : 2) | (a.SimilarityAfterRetry is null ? 0 : 4)));
            s.Byte((byte)a.Action);
            s.Double(a.SimilarityToSource);
            s.Double(a.SimilarityToTarget ?? 0);
            s.Double(a.SimilarityAfterRetry ?? 0);
        }
        return s.Length;
    }

    public static FrameRecord Read(ReadOnlySpan<byte> from)
    {
        var s = new SpoolReader(from);
        var index = s.Int64();
        var time = s.Double();
        var faces = new FaceRecord[s.Int32()];
        var damaged = s.Bool();
        for (var i = 0; i < faces.Length; i++)
        {
            var track = s.Int32();
            var box = new FaceBox(s.Single(), s.Single(), s.Single(), s.Single(), s.Single());
            var handling = (FaceHandling)s.Byte();
            var flags = s.Byte();
            FaceAudit? audit = null;
            if (flags != 0)
            {
                var action = (AuditAction)s.Byte();
                var source = s.Double();
                var target = s.Double();
                var retry = s.Double();
                audit = new FaceAudit(source, (flags & 2) != 0 ? target : null, action, (flags & 4) != 0 ? retry : null);
            }
            faces[i] = new FaceRecord(track, box, handling, audit);
        }
        return new FrameRecord(index, time, faces, damaged);
    }
}

/// <summary>
/// What the pipeline did to every face of every frame, plus totals. The per-frame records live in a temp-file spool, not
/// in memory (an hours-long clip has millions of them), and are streamed from there into the JSON report; dispose the
/// report to release the spool at once.
/// </summary>
public sealed class AnonymizeReport : IDisposable
{
    private readonly FrameSpool<FrameRecord, FrameRecordCodec> _frames = new();
    private readonly List<string> _warnings = [];

    public string Input { get; init; } = "";
    public string Output { get; init; } = "";
    public string Stage { get; init; } = "";
    public DetectorKind Detector { get; init; } = DetectorKind.Hog;
    /// <summary>The SSD score threshold the run used; null when SSD did not run.</summary>
    public float? MinConfidence { get; init; }
    public AnonymizeMode Mode { get; init; }
    /// <summary>Networks built with random weights (latent mode with --random-weights); empty for a real run.</summary>
    public IReadOnlyList<string> RandomWeights { get; internal set; } = [];
    /// <summary>Role → weights file latent mode loaded.</summary>
    public IReadOnlyDictionary<string, string> ModelFiles { get; internal set; } = new Dictionary<string, string>();
    public IReadOnlyList<TrackIdentity> Identities { get; internal set; } = [];
    /// <summary>Whether every face was audited by the independent recognizer, and its same-person threshold.</summary>
    public bool Audited { get; internal set; }
    public double AuditThreshold { get; internal set; }
    public long LeaksFound { get; private set; }
    public long LeaksFixed { get; private set; }
    public long LeaksBlurred { get; private set; }
    public long FacesAudited { get; private set; }
    public InferenceStats? Inference { get; internal set; }
    public long Frames => _frames.Count;
    /// <summary>Every frame's record, in order, read back from the spool on each enumeration.</summary>
    public IEnumerable<FrameRecord> FrameRecords => _frames.Read();
    public IReadOnlyList<string> Warnings => _warnings;
    public long Faces { get; private set; }
    public long Replaced { get; private set; }
    public long Tracked { get; private set; }
    public long FallbackBlurred { get; private set; }
    /// <summary>Frames blurred whole because their picture was damaged (see <see cref="Deid.Media.VideoFrame.Damaged"/>).</summary>
    public long DamagedBlurred { get; private set; }
    public int Tracks { get; internal set; }
    public TimeSpan Elapsed { get; internal set; }
    public double Fps => Elapsed.TotalSeconds > 0 ? Frames / Elapsed.TotalSeconds : 0;

    internal void AddFrame(FrameRecord frame)
    {
        _frames.Add(frame);
        if (frame.Damaged) DamagedBlurred++;
        foreach (var f in frame.Faces)
        {
            Faces++;
            if (f.Audit is { } a)
            {
                FacesAudited++;
                if (a.Action != AuditAction.Passed) LeaksFound++;
                if (a.Action == AuditAction.Reinforced) LeaksFixed++;
                if (a.Action == AuditAction.Blurred) LeaksBlurred++;
            }
            switch (f.Handling)
            {
                case FaceHandling.Replaced: Replaced++; break;
                case FaceHandling.Tracked: Tracked++; break;
                default: FallbackBlurred++; break;
            }
        }
    }

    internal void AddWarning(string warning) => _warnings.Add(warning);

    public void Dispose() => _frames.Dispose();

    /// <summary>Writes the report as JSON through a temp file and a rename, so a reader never sees half a report.</summary>
    public void WriteJson(string path) => JsonReportFile.Write(path, Write);

    public string ToJson() => JsonReportFile.ToJson(Write);

    private void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("input", Input);
        w.WriteString("output", Output);
        w.WriteString("stage", Stage);
        w.WriteString("mode", Mode.ToString().ToLowerInvariant());
        w.WriteString("detector", Detector.ToString().ToLowerInvariant());
        if (MinConfidence is float threshold) w.WriteNumber("minConfidence", Math.Round(threshold, 4));
        w.WriteStartObject("totals");
        w.WriteNumber("frames", Frames);
        w.WriteNumber("faces", Faces);
        w.WriteNumber("replaced", Replaced);
        w.WriteNumber("tracked", Tracked);
        w.WriteNumber("fallbackBlurred", FallbackBlurred);
        w.WriteNumber("damagedBlurred", DamagedBlurred);
        w.WriteNumber("tracks", Tracks);
        w.WriteNumber("elapsedSeconds", Math.Round(Elapsed.TotalSeconds, 3));
        w.WriteNumber("fps", Math.Round(Fps, 3));
        w.WriteEndObject();
        if (Mode == AnonymizeMode.Latent)
        {
            JsonReportFile.WriteWeights(w, RandomWeights, ModelFiles);
            w.WriteStartArray("identities");
            foreach (var id in Identities)
            {
                w.WriteStartObject();
                w.WriteNumber("trackId", id.TrackId);
                w.WriteString("kind", id.Kind);
                if (id.Seed is long seed) w.WriteNumber("seed", seed);
                if (id.Photo is { } photo) w.WriteString("photo", photo);
                if (id.MaxSimilarityToClip is double m) w.WriteNumber("maxSimilarityToClip", m);
                if (id.MeanWStep is double step) w.WriteNumber("meanWStep", step);
                w.WriteStartArray("rejected");
                foreach (var r in id.Rejected)
                {
                    w.WriteStartObject();
                    w.WriteNumber("seed", r.Seed);
                    w.WriteNumber("maxSimilarity", r.MaxSimilarity);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (Inference is { } inf)
        {
            w.WriteStartObject("inference");
            w.WriteNumber("batches", inf.Batches);
            w.WriteNumber("crops", inf.Crops);
            w.WriteNumber("meanBatch", Math.Round(inf.MeanBatch, 3));
            w.WriteNumber("busySeconds", Math.Round(inf.Busy.TotalSeconds, 3));
            w.WriteNumber("idleSeconds", Math.Round(inf.Idle.TotalSeconds, 3));
            w.WriteEndObject();
        }
        w.WriteStartObject("audit");
        w.WriteBoolean("enabled", Audited);
        if (Audited)
        {
            w.WriteString("recognizer", OnnxFaceRecognizer.RelativePath);
            w.WriteNumber("threshold", AuditThreshold);
            w.WriteNumber("facesAudited", FacesAudited);
            w.WriteNumber("leaksFound", LeaksFound);
            w.WriteNumber("leaksFixed", LeaksFixed);
            w.WriteNumber("leaksBlurred", LeaksBlurred);
        }
        w.WriteEndObject();
        w.WriteStartArray("warnings");
        foreach (var s in _warnings) w.WriteStringValue(s);
        w.WriteEndArray();
        w.WriteStartArray("frames");
        foreach (var f in _frames.Read())
        {
            w.WriteStartObject();
            w.WriteNumber("index", f.Index);
            w.WriteNumber("time", Math.Round(f.Time, 6));
            if (f.Damaged) w.WriteBoolean("damaged", true);
            w.WriteStartArray("faces");
            foreach (var face in f.Faces)
            {
                w.WriteStartObject();
                w.WriteNumber("trackId", face.TrackId);
                w.WriteStartArray("box");
                w.WriteNumberValue(Math.Round(face.Box.Left, 1));
                w.WriteNumberValue(Math.Round(face.Box.Top, 1));
                w.WriteNumberValue(Math.Round(face.Box.Right, 1));
                w.WriteNumberValue(Math.Round(face.Box.Bottom, 1));
                w.WriteEndArray();
                w.WriteString("handling", face.Handling.ToJsonName());
                if (face.Audit is { } audit)
                {
                    w.WriteStartObject("audit");
                    w.WriteNumber("similarityToSource", audit.SimilarityToSource);
                    if (audit.SimilarityToTarget is double t) w.WriteNumber("similarityToTarget", t);
                    if (audit.SimilarityAfterRetry is double after) w.WriteNumber("similarityAfterRetry", after);
                    w.WriteString("action", audit.Action.ToString().ToLowerInvariant());
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
