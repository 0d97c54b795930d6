using Deid.Faces;
using Deid.Models.FaceApi;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// The SSD over a video's frames in order, searching each frame only where a face can be that the last frames do not
/// account for (the same reasoning as <see cref="HogStreamFinder"/>; see there). A full search of a wide frame is
/// four network passes (<see cref="SsdFaceFinder.FindRaw"/>); a partial one packs what it needs as 256² tiles, four
/// to a 512² pass:
/// <list type="bullet">
/// <item>each face of the previous frame where anything under it changed, in a square of <see cref="TrackWindow"/>×
/// its size (shrunk to the tile; one where nothing changed is kept as it was);</item>
/// <item>each area that changed since it was last searched (<see cref="MotionMap"/>) outside the tracked heads, at
/// no less resolution than the full search gives it (a tile if it fits at that scale, else a pass of its own).</item>
/// </list>
/// The full search runs on the first frame, every <see cref="FullScanEvery"/> frames, when the partial one would
/// need as many passes, and when a tracked face whose surroundings changed is not found again (searched again in
/// full, in that frame). Stateful: one instance per stream, frames in order.
/// </summary>
public sealed class SsdStreamFinder(SsdMobilenetv1 net, DeviceExecutor device, float minConfidence = SsdMobilenetv1.DefaultMinConfidence) : IFaceFinder
{
    public const int FullScanEvery = HogStreamFinder.FullScanEvery;
    /// <summary>Side of the square searched around a tracked face, in face sizes.</summary>
    public const float TrackWindow = 2.5f;
    /// <summary>Side of a packed tile: a quarter of the network's input.</summary>
    public const int TileSide = SsdMobilenetv1.InputSize / 2;
    /// <summary>Long side of the grey image motion is measured on.</summary>
    public const int MotionSide = 640;

    private readonly SsdFaceFinder _ssd = new(net, device, minConfidence);
    private readonly MotionMap _motion = new();
    private List<SsdFace> _previous = [];
    private Size _frameSize;
    private long _frame = -1;

    /// <summary>How the last frame was searched.</summary>
    public StreamScanStats Last { get; private set; }

    /// <summary>Network passes so far (a full search of a wide frame is four).</summary>
    public long Passes { get; private set; }

    public IReadOnlyList<FaceBox> Find(Mat bgr) => FindRaw(bgr).Select(SsdFaceFinder.ToDlibBox).ToList();

    /// <summary>This frame's faces in the network's framing, frame coordinates.</summary>
    public IReadOnlyList<SsdFace> FindRaw(Mat bgr)
    {
        _frame++;
        var size = bgr.Size();
        if (size != _frameSize) { _previous = []; _frameSize = size; }
        double m = Math.Min(1.0, (double)MotionSide / Math.Max(size.Width, size.Height));
        using (var grey = new Mat())
        using (var small = new Mat())
        {
            Cv2.CvtColor(bgr, grey, bgr.Channels() == 4 ? ColorConversionCodes.BGRA2GRAY : ColorConversionCodes.BGR2GRAY);
            Cv2.Resize(grey, small, new Size(Math.Max(1, (int)Math.Round(size.Width * m)), Math.Max(1, (int)Math.Round(size.Height * m))), 0, 0, InterpolationFlags.Area);
            _motion.Update(small);
        }

        var faces = _frame % FullScanEvery == 0 || !_motion.HasReference ? null : SearchPartially(bgr, m);
        if (faces == null)
        {
            faces = _ssd.FindRaw(bgr).ToList();
            _motion.SearchedAll();
            Passes += SsdFaceFinder.Regions(size.Width, size.Height).Count;
            Last = new StreamScanStats(true, 1.0);
        }
        _previous = faces;
        return faces;
    }

    private List<SsdFace>? SearchPartially(Mat bgr, double m)
    {
        int width = bgr.Width, height = bgr.Height;
        var frame = new Rect(0, 0, width, height);
        int fullPasses = SsdFaceFinder.Regions(width, height).Count;
        // The resolution the full search gives every part of the frame: its windows' (or the whole frame's) scale.
        double fullScale = Math.Min(1.0, (double)SsdMobilenetv1.InputSize /
            (SsdFaceFinder.Windows(width, height).Count > 0 ? Math.Min(width, height) : Math.Max(width, height)));

        var small = new List<Rect>();   // regions for packed tiles
        var large = new List<Rect>();   // regions needing a pass of their own
        foreach (var p in _previous)
        {
            // Nothing under it changed since it was last searched: kept as it is below, no tile.
            if (!_motion.IsDirty(ToMotion(SsdFaceFinder.Box(p).ToRect(), m))) continue;
            float side = Math.Min(Math.Min(width, height), TrackWindow * Math.Max(p.Width, p.Height));
            small.Add(Inside(new Rect((int)(p.X + p.Width / 2 - side / 2), (int)(p.Y + p.Height / 2 - side / 2), (int)side, (int)side), frame));
        }
        var exclude = _previous.Select(p => ToMotion(HogStreamFinder.HeadZone(SsdFaceFinder.Box(p)), m));
        var dirty = _motion.DirtyRegions(exclude, r => Math.Max(8, Math.Max(r.Width, r.Height) / 4), minCells: 4)
            .Select(r => MotionMap.Clip(new Rect((int)(r.X / m), (int)(r.Y / m), (int)Math.Ceiling(r.Width / m), (int)Math.Ceiling(r.Height / m)), frame.Size))
            .Where(r => r.Width > 0 && r.Height > 0).ToList();
        // Fewest tiles: changed areas joined while their union still fits a tile at the full search's scale.
        int tileReach = (int)(TileSide / fullScale);
        dirty = MotionMap.Cluster(dirty, tileReach);
        foreach (var r in dirty)
        {
            int longSide = Math.Max(r.Width, r.Height);
            if (Math.Min(1.0, (double)TileSide / longSide) >= fullScale) small.Add(r);
            else if (Math.Min(1.0, (double)SsdMobilenetv1.InputSize / longSide) >= fullScale) large.Add(r);
            else return null;
        }
        int passes = (small.Count + 3) / 4 + large.Count;
        if (passes >= fullPasses) return null;

        var tiles = new List<SsdTile>();
        for (var i = 0; i < small.Count; i++)
            tiles.Add(new SsdTile(small[i], i / 4, new Point(i % 2 * TileSide, i / 2 % 2 * TileSide), TileSide));
        int next = (small.Count + 3) / 4;
        foreach (var r in large) tiles.Add(new SsdTile(r, next++, default, SsdMobilenetv1.InputSize));
        var regions = tiles.Select(t => t.Region).ToList();
        var found = SsdFaceFinder.Combine(width, height, regions, _ssd.Search(bgr, tiles));
        Passes += passes;

        foreach (var p in _previous)
        {
            var box = SsdFaceFinder.Box(p);
            if (found.Any(f => FaceBox.IoU(box, SsdFaceFinder.Box(f)) >= 0.2f)) continue;
            // Not found again: kept where nothing under it changed, else the frame is searched in full.
            if (_motion.IsDirty(ToMotion(box.ToRect(), m))) return null;
            found.Add(p);
        }
        foreach (var r in dirty) _motion.Searched(ToMotion(r, m));
        Last = new StreamScanStats(false, (double)passes / fullPasses);
        return SsdFaceFinder.Merge(found);
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
