using Deid.Faces;
using Deid.Models.FaceApi;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// The SSD over a video's frames in order, searching each frame only where a face can be that the last frames do not
/// account for (the same reasoning as <see cref="HogStreamFinder"/>; see there). A full search of a wide frame is
/// three 512² network passes and the whole frame's (<see cref="SsdFaceFinder.FindRaw"/>); a partial one searches
/// only what it needs, each region in an input just its size (<see cref="SsdTile.Part"/>: the network's cost
/// follows its pixels):
/// <list type="bullet">
/// <item>each face of the previous frame where anything under it changed, in a square of <see cref="TrackWindow"/>×
/// its size shrunk to <see cref="TileSide"/> (one where nothing changed is kept as it was);</item>
/// <item>each area that changed since it was last searched (<see cref="MotionMap"/>) outside the tracked heads, at
/// the resolution the full search gives it, areas joined where one input costs less than two.</item>
/// </list>
/// The full search runs on the first frame, every <see cref="FullScanEvery"/> frames, when the partial one would
/// cost as much or a changed area does not fit one input, and when a tracked face whose surroundings changed is not
/// found again (searched again in full, in that frame). Stateful: one instance per stream, frames in order.
/// </summary>
public sealed class SsdStreamFinder(SsdMobilenetv1 net, DeviceExecutor device, float minConfidence = SsdMobilenetv1.DefaultMinConfidence) : IFaceFinder
{
    public const int FullScanEvery = HogStreamFinder.FullScanEvery;
    /// <summary>Side of the square searched around a tracked face, in face sizes.</summary>
    public const float TrackWindow = 2.0f;
    /// <summary>
    /// Side a tracked face's square is shrunk to: the face about 96 pixels across in it, which the network finds as
    /// surely as larger ones, for a fifth of a 512² pass.
    /// </summary>
    public const int TileSide = 192;
    /// <summary>Long side of the grey image motion is measured on.</summary>
    public const int MotionSide = 640;
    /// <summary>What a pass costs beside its pixels, in 512² passes (about 8 ms of ~120 ms on two cores: a 32² input takes that).</summary>
    private const double PassOverhead = 0.07;

    private readonly SsdFaceFinder _ssd = new(net, device, minConfidence);
    private readonly MotionMap _motion = new();
    private List<SsdFace> _previous = [];
    private Size _frameSize;
    private long _frame = -1;

    /// <summary>How the last frame was searched.</summary>
    public StreamScanStats Last { get; private set; }

    /// <summary>The network's work so far, in 512² passes (<see cref="SsdTile.Work"/>: a 256² input is a quarter).</summary>
    public double Passes { get; private set; }

    public IReadOnlyList<FaceBox> Find(Mat bgr) => FindRaw(bgr).Select(SsdFaceFinder.ToDlibBox).ToList();

    /// <summary>This frame's faces in the network's framing, frame coordinates.</summary>
    public IReadOnlyList<SsdFace> FindRaw(Mat bgr)
    {
        _frame++;
        var size = bgr.Size();
        if (size != _frameSize) { _previous = []; _frameSize = size; }
        double m = Math.Min(1.0, (double)MotionSide / Math.Max(size.Width, size.Height));
        using (var grey = GreyImage.From(bgr))
        using (var small = new Mat())
        {
            Cv2.Resize(grey, small, new Size(Math.Max(1, (int)Math.Round(size.Width * m)), Math.Max(1, (int)Math.Round(size.Height * m))), 0, 0, InterpolationFlags.Area);
            _motion.Update(small);
        }

        var faces = _frame % FullScanEvery == 0 || !_motion.HasReference ? null : SearchPartially(bgr, m);
        if (faces == null)
        {
            faces = _ssd.FindRaw(bgr).ToList();
            _motion.SearchedAll();
            Passes += SsdFaceFinder.FullSearchWork(size.Width, size.Height);
            Last = new StreamScanStats(true, 1.0);
        }
        _previous = faces;
        return faces;
    }

    private List<SsdFace>? SearchPartially(Mat bgr, double m)
    {
        int width = bgr.Width, height = bgr.Height;
        var frame = new Rect(0, 0, width, height);
        double fullWork = SsdFaceFinder.FullSearchWork(width, height);
        // The resolution the full search gives every part of the frame: its windows' (or the whole frame's) scale.
        double fullScale = Math.Min(1.0, (double)SsdMobilenetv1.InputSize /
            (SsdFaceFinder.Windows(width, height).Count > 0 ? Math.Min(width, height) : Math.Max(width, height)));

        var tiles = new List<SsdTile>();
        foreach (var p in _previous)
        {
            // Nothing under it changed since it was last searched: kept as it is below, no tile.
            if (!_motion.IsDirty(ToMotion(SsdFaceFinder.Box(p).ToRect(), m))) continue;
            float side = Math.Min(Math.Min(width, height), TrackWindow * Math.Max(p.Width, p.Height));
            var window = Inside(new Rect((int)(p.X + p.Width / 2 - side / 2), (int)(p.Y + p.Height / 2 - side / 2), (int)side, (int)side), frame);
            tiles.Add(SsdTile.Fit(window, TileSide));
        }
        var exclude = _previous.Select(p => ToMotion(HogStreamFinder.HeadZone(SsdFaceFinder.Box(p)), m));
        var dirty = _motion.DirtyRegions(exclude, r => Math.Max(8, Math.Max(r.Width, r.Height) / 4), minCells: 4)
            .Select(r => MotionMap.Clip(new Rect((int)(r.X / m), (int)(r.Y / m), (int)Math.Ceiling(r.Width / m), (int)Math.Ceiling(r.Height / m)), frame.Size))
            .Where(r => r.Width > 0 && r.Height > 0).ToList();
        // Each changed area at the full search's scale, joined with others where one input for both costs less.
        dirty = JoinWhereCheaper(MotionMap.Cluster(dirty), fullScale);
        foreach (var r in dirty)
        {
            if (!Fits(r, fullScale)) return null;
            tiles.Add(SsdTile.Part(r, fullScale));
        }
        double work = tiles.Sum(t => t.Work);
        if (work + tiles.Count * PassOverhead >= fullWork + SsdFaceFinder.Regions(width, height).Count * PassOverhead) return null;

        var regions = tiles.Select(t => t.Region).ToList();
        var found = SsdFaceFinder.Combine(width, height, regions, _ssd.Search(bgr, tiles));
        Passes += work;

        foreach (var p in _previous)
        {
            var box = SsdFaceFinder.Box(p);
            if (found.Any(f => FaceBox.IoU(box, SsdFaceFinder.Box(f)) >= 0.2f)) continue;
            // Not found again: kept where nothing under it changed, else the frame is searched in full.
            if (_motion.IsDirty(ToMotion(box.ToRect(), m))) return null;
            found.Add(p);
        }
        foreach (var r in dirty) _motion.Searched(ToMotion(r, m));
        Last = new StreamScanStats(false, work / fullWork);
        return SsdFaceFinder.Merge(found);
    }

    /// <summary>Whether a region at this scale fits the network's input.</summary>
    private static bool Fits(Rect r, double scale) =>
        Math.Max(r.Width, r.Height) * Math.Min(1.0, scale) <= SsdMobilenetv1.InputSize;

    /// <summary>
    /// Regions joined into their bounding rectangle while one input for the union costs the network less than an
    /// input for each (and still fits; then so does each).
    /// </summary>
    private static List<Rect> JoinWhereCheaper(List<Rect> regions, double scale)
    {
        double Cost(Rect r) => SsdTile.Part(r, scale).Work + PassOverhead;
        return MotionMap.Join(regions, (a, b, u) => Fits(u, scale) && Cost(u) <= Cost(a) + Cost(b));
    }

    private static Rect ToMotion(Rect r, double m) =>
        new((int)Math.Floor(r.X * m), (int)Math.Floor(r.Y * m), (int)Math.Ceiling(r.Width * m) + 1, (int)Math.Ceiling(r.Height * m) + 1);

    /// <summary>A rectangle moved (not cut) to lie inside the frame, as far as it fits.</summary>
    private static Rect Inside(Rect r, Rect frame)
    {
        int w = Math.Min(r.Width, frame.Width), h = Math.Min(r.Height, frame.Height);
        return new Rect(Math.Clamp(r.X, 0, frame.Width - w), Math.Clamp(r.Y, 0, frame.Height - h), w, h);
    }

    public void Dispose() => _motion.Dispose();
}
