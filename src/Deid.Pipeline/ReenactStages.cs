using System.Collections.Concurrent;
using System.Threading.Channels;
using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// Keeps one face per frame, the driving face: track <c>fixedTrack</c> when given, else the largest usable face of
/// the first frame that has one, followed as long as the tracker keeps its track; when the tracker drops it, the
/// largest face then present takes over. Every other face leaves the frame here.
/// </summary>
internal sealed class DrivingSelectStage(int? fixedTrack, ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    private int? _current = fixedTrack;

    protected override async Task LoopAsync(CancellationToken ct)
    {
        await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            static bool Usable(FaceJob f) => f.Landmarks != null && f.Handling != FaceHandling.FallbackBlurred;
            if (fixedTrack is null && (_current is null || work.Faces.All(f => f.TrackId != _current)))
                _current = work.Faces.Where(Usable).MaxBy(f => f.Box.Area)?.TrackId;
            foreach (var f in work.Faces.Where(f => f.TrackId != _current || !Usable(f)).ToList())
            {
                work.Faces.Remove(f);
                f.Dispose();
            }
            await SendAsync(work, ct).ConfigureAwait(false);
        }
    }
}

/// <summary>
/// The latent face stage as the reenactment runs it: the same stage, which also hands on the w each head was drawn
/// from (by frame index) for the report's w-change.
/// </summary>
internal sealed class ReenactFaceStage(LatentFaceStage inner) : IFaceStage
{
    private readonly Dictionary<int, int> _seen = [];

    /// <summary>Frame index → L2 distance of its w to the previous head's of the same track (the first head has none).</summary>
    public ConcurrentDictionary<long, double> WChange { get; } = new();
    public string Name => "reenact";
    public int BatchSize => inner.BatchSize;
    public bool ReplacesIdentity => true;
    public float[]? TargetEmbedding(int trackId) => inner.TargetEmbedding(trackId);

    public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct)
    {
        var result = inner.Process(batch, ct);
        // The stage keeps each track's consecutive w steps in order: crop k (from 0) of a track has step k - 1.
        foreach (var c in batch)
        {
            var k = _seen.GetValueOrDefault(c.TrackId);
            _seen[c.TrackId] = k + 1;
            var steps = inner.WSteps(c.TrackId);
            if (k >= 1 && k - 1 < steps.Count) WChange[c.FrameIndex] = steps[k - 1];
        }
        return result;
    }

    public void Dispose() => inner.Dispose();
}

/// <summary>The still as the paste target: its picture at the output size, its aligned face and crop→picture transform.</summary>
internal sealed class StillTarget(Mat picture, Mat crop, Affine cropToPicture, float[] embedding) : IDisposable
{
    public Mat Picture { get; } = picture;
    /// <summary>The still's own aligned face (G's size): colour reference for the pasted head, and the --crop picture until the first head.</summary>
    public Mat Crop { get; } = crop;
    public Affine CropToPicture { get; } = cropToPicture;
    /// <summary>The independent recognizer's embedding of the still's face.</summary>
    public float[] Embedding { get; } = embedding;
    public int CropSize => Crop.Width;

    public void Dispose()
    {
        Picture.Dispose();
        Crop.Dispose();
    }
}

/// <summary>
/// Turns each frame into the reenactment's picture: the generated head pasted into the still (colour-matched to the
/// still's face) where the still's face is, moved as the driving face moved since its first frame (the similarity
/// A₀⁻¹·Aₜ of the driving alignments, applied in the still's aligned frame), kept inside the picture; or, with
/// <c>crop</c>, the head itself. A frame without a driving face holds the last head at its last place. Measures the
/// report's per-frame numbers on the way. The decoded frame is replaced by the picture (same index and timestamp).
/// </summary>
internal sealed class StillPasteStage(StillTarget still, bool crop, ReenactFaceStage stage, OnnxFaceRecognizer recognizer,
    FaceFinderFactory finders, DlibShapePredictor predictor, ReenactReport report, PipelineContext context,
    ChannelReader<FrameWork> input, ChannelWriter<FrameWork> output) : Stage<FrameWork>(output)
{
    private Mat? _lastPicture;
    // Where the last head was pasted (null with crop): a held frame shows it there again. Kept here rather than looked
    // up in the report, whose records are in a spool on disk.
    private Placement? _lastPaste;
    private Affine? _reference;
    private int? _referenceTrack;

    protected override async Task LoopAsync(CancellationToken ct)
    {
        using var finder = finders.Create();
        try
        {
            await foreach (var work in input.ReadAllAsync(ct).ConfigureAwait(false))
            {
                try { Compose(work, finder); }
                catch { work.Dispose(); throw; }
                await SendAsync(work, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _lastPicture?.Dispose();
        }
    }

    private void Compose(FrameWork work, IFaceFinder finder)
    {
        var frame = work.Frame;
        var face = work.Faces.FirstOrDefault(f => f.Output != null && f.Aligned != null && f.Handling != FaceHandling.FallbackBlurred);
        Mat picture;
        ReenactFrame record;
        if (face is null)
        {
            var head = _lastPicture is null ? ReenactHead.None : ReenactHead.Held;
            picture = (_lastPicture ?? (crop ? still.Crop : still.Picture)).Clone();
            record = new ReenactFrame(frame.Index, frame.Time.TotalSeconds, head, work.Faces.FirstOrDefault()?.TrackId, false,
                null, null, null, null, head == ReenactHead.Held ? _lastPaste : null);
        }
        else
        {
            var generated = face.Output!;
            var drivingA = Affine.FromMat(face.Aligned!.CropToFrame);
            if (_reference is null || _referenceTrack != face.TrackId)
            {
                _reference = drivingA;
                _referenceTrack = face.TrackId;
            }
            // The driving face's motion since its first frame, in its own aligned coordinates.
            var motion = _reference.Value.Inverse().Then(drivingA);
            Placement? paste = null;
            if (crop) picture = generated.Clone();
            else
            {
                var (place, clamped) = HeadPlacement.Clamp(still.CropToPicture.Then(motion), still.CropSize, still.Picture.Width, still.Picture.Height);
                picture = still.Picture.Clone();
                Paste(picture, place, generated);
                paste = PlacementOf(place, still.CropSize, clamped);
            }

            double? wChange = stage.WChange.TryRemove(frame.Index, out var step) ? step : null;
            var (identity, landmarks) = Measure(generated, face, finder);
            record = new ReenactFrame(frame.Index, frame.Time.TotalSeconds, ReenactHead.Generated, face.TrackId,
                face.Handling == FaceHandling.Tracked, wChange, identity, landmarks, PlacementOf(drivingA, still.CropSize, false), paste);
            _lastPicture?.Dispose();
            _lastPicture = picture.Clone();
            _lastPaste = paste;
        }
        foreach (var f in work.Faces) f.ReleaseImages();
        frame.Image.Dispose();
        frame.Image = picture;
        report.AddFrame(record);
    }

    private void Paste(Mat picture, Affine cropToPicture, Mat head)
    {
        var n = still.CropSize;
        var corners = new[] { cropToPicture.Apply(0, 0), cropToPicture.Apply(0, n), cropToPicture.Apply(n, n), cropToPicture.Apply(n, 0) };
        var quad = corners.Select(p => new Point2f((float)p.X, (float)p.Y)).ToArray();
        int x0 = Math.Clamp((int)Math.Floor(corners.Min(p => p.X)), 0, picture.Width), y0 = Math.Clamp((int)Math.Floor(corners.Min(p => p.Y)), 0, picture.Height);
        int x1 = Math.Clamp((int)Math.Ceiling(corners.Max(p => p.X)) + 1, 0, picture.Width), y1 = Math.Clamp((int)Math.Ceiling(corners.Max(p => p.Y)) + 1, 0, picture.Height);
        if (x1 <= x0 || y1 <= y0) return;
        using var toPicture = cropToPicture.ToMat();
        using var toCrop = cropToPicture.Inverse().ToMat();
        // The still's own aligned face is the colour reference; the AlignedFace borrows it (only the transforms are disposed).
        var target = new AlignedFace(still.Crop, toCrop, toPicture, quad, new Rect(x0, y0, x1 - x0, y1 - y0));
        FacePaster.Paste(picture, target, head, BlendMode.ColorMatch);
    }

    private static Placement PlacementOf(Affine cropToPicture, int cropSize, bool clamped)
    {
        var c = cropToPicture.Apply((cropSize - 1) / 2.0, (cropSize - 1) / 2.0);
        return new Placement(c.X, c.Y, cropToPicture.Scale * cropSize, cropToPicture.AngleDegrees, clamped);
    }

    /// <summary>
    /// Identity similarity of the head to the still (independent recognizer, aligned by dlib's landmarks on the head,
    /// or FFHQ's five template points, where G draws them by construction, when dlib finds none) and the mean landmark distance to the driving face.
    /// </summary>
    private (double? Identity, double? Landmarks) Measure(Mat generated, FaceJob face, IFaceFinder finder)
    {
        try
        {
            var found = FrameDetector.Detect(finder, predictor, generated).Where(d => d.Landmarks != null).MaxBy(d => d.Box.Area);
            var points = found?.Landmarks!.Points;
            var embedding = points != null ? recognizer.Embed(generated, points)
                : recognizer.EmbedFive(generated, OnnxFaceRecognizer.FfhqFivePoints(generated.Width));
            var identity = OnnxFaceRecognizer.Cosine(embedding, still.Embedding);
            double? distance = null;
            if (points != null && face.Landmarks != null)
            {
                var driving = face.Aligned!.TransformToCrop(face.Landmarks);
                distance = driving.Zip(points, (a, b) => Math.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y))).Average();
            }
            return (Math.Round(identity, 6), distance);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            context.Warn($"a generated head could not be measured ({e.Message})");
            return (null, null);
        }
    }
}

/// <summary>Where a reenacted head may go in the still.</summary>
public static class HeadPlacement
{
    /// <summary>
    /// Keeps the head (the feathered ellipse of the aligned square) inside the picture: shrunk about its centre when
    /// larger than the picture, then shifted back in.
    /// </summary>
    public static (Affine Place, bool Clamped) Clamp(Affine place, int cropSize, int width, int height)
    {
        var n = (double)cropSize;
        // Bounds of the head ellipse (FacePaster.HeadMask: 0.76 n wide, 0.90 n tall about the crop centre) under the map.
        var ex = place.Apply(0.38 * n, 0); var ey = place.Apply(0, 0.45 * n); var o = place.Apply(0, 0);
        double ax = ex.X - o.X, ay = ex.Y - o.Y, bx = ey.X - o.X, by = ey.Y - o.Y;
        double halfW = Math.Sqrt(ax * ax + bx * bx), halfH = Math.Sqrt(ay * ay + by * by);
        var c = place.Apply(n / 2, n / 2);
        var clamped = false;
        var fit = Math.Min(width / (2 * halfW), height / (2 * halfH));
        if (fit < 1)
        {
            place = Affine.ScaleAbout(fit, c.X, c.Y).Then(place);
            halfW *= fit;
            halfH *= fit;
            clamped = true;
        }
        double dx = 0, dy = 0;
        if (c.X - halfW < 0) dx = halfW - c.X;
        else if (c.X + halfW > width) dx = width - halfW - c.X;
        if (c.Y - halfH < 0) dy = halfH - c.Y;
        else if (c.Y + halfH > height) dy = height - halfH - c.Y;
        if (dx != 0 || dy != 0)
        {
            place = Affine.Translation(dx, dy).Then(place);
            clamped = true;
        }
        return (place, clamped);
    }
}
