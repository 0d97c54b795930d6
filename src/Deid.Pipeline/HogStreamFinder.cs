using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// dlib HOG over a video's frames in order, searching each frame only where a face can be that the last frames did
/// not already account for. The full-frame scan (<see cref="HogFaceFinder"/>) costs about as much as decoding and
/// encoding the frame; in a talking-head clip almost all of it re-finds the same face in the same place. Per frame:
/// <list type="number">
/// <item>Each face of the previous frame is kept as it was if nothing under it changed (the same pixels give the
/// same verdict); otherwise it is searched for where it was, at its own size (<see cref="NearWindow"/>), then where
/// that misses in a square of <see cref="TrackWindow"/>× its size around it, shrunk so the face is about
/// <see cref="TrackFaceSide"/> px (faces from 0.9× to 1.3× its size are found there), and where that misses too,
/// its surroundings are searched at scan resolution.</item>
/// <item>Every area that changed since it was last searched (<see cref="MotionMap"/>) outside the tracked heads is
/// searched at scan resolution, with a margin as large as the change itself, for faces of every size: a face can
/// only become visible where pixels change, so a face cut or walking into the picture is found in its first frame.</item>
/// <item>The whole frame is scanned as <see cref="HogFaceFinder"/> does on the first frame, every
/// <see cref="FullScanEvery"/> frames, and whenever the areas to search add up to more than
/// <see cref="MaxPartialFraction"/> of it (a cut, a pan, a lighting change): the periodic scan bounds what the
/// partial searches could miss (a face HOG only just accepts, a small face next to a tracked head) to that many frames.</item>
/// </list>
/// Stateful: one instance follows one stream, frames in order (the detect stage runs it in one worker). Deterministic:
/// the result depends only on the frames.
/// </summary>
public sealed class HogStreamFinder : IFaceFinder
{
    /// <summary>Frames between full-frame scans.</summary>
    public const int FullScanEvery = 10;
    /// <summary>Above this fraction of the scan image to search, the whole of it is scanned instead.</summary>
    public const double MaxPartialFraction = 0.55;
    /// <summary>Side of the square searched around a tracked face, in face sizes.</summary>
    public const float TrackWindow = 1.6f;
    /// <summary>Face size (scan px) a track window is shrunk to.</summary>
    public const float TrackFaceSide = 90f;
    /// <summary>
    /// Pyramid levels a track window is searched at: dlib's 80 px window at 1, 1.2 and 1.44×, faces 0.9× to 1.3× of
    /// <see cref="TrackFaceSide"/>, far more than a face's size changes between frames. The window's fourth level,
    /// for faces up to 1.6×, cost an eighth more; a face outside the range is searched for at scan resolution.
    /// </summary>
    public const int TrackLevels = 3;
    /// <summary>
    /// Side of the square a tracked face is first searched in, in face sizes, shrunk so the face fills dlib's 80 px
    /// window (<see cref="NearFaceSide"/>) and searched at that one pyramid level: a face that moved under a tenth
    /// of its size and kept its size (nearly every frame of a talking head) is found there at about a quarter of the
    /// wider search's cost. A miss costs only that, before the wider search runs as it would have.
    /// </summary>
    public const float NearWindow = 1.3f;
    /// <summary>
    /// Face size (scan px) a near window is shrunk to: the box side dlib's frontal detector gives a face its 80 px
    /// window holds at the base level. So the box found there is the tracked one's size, frame after frame (at 80 it
    /// shrank by a tenth a frame until the face was lost).
    /// </summary>
    public const float NearFaceSide = 73f;

    /// <summary>
    /// A tracked head's surroundings, where its hair, ears and neck move with it: the face box widened to
    /// <see cref="HeadZoneWidth"/>× and reaching <see cref="HeadZoneAbove"/>× its height above it and
    /// <see cref="HeadZoneBelow"/>× below. Changes there are not searched for new faces at scan resolution; a face
    /// 0.9× to 1.3× the tracked one's size is still found there by the track window, another by the next full scan.
    /// </summary>
    public const float HeadZoneWidth = 1.8f, HeadZoneAbove = 0.8f, HeadZoneBelow = 0.5f;
    /// <summary>Two finds overlapping by this IoU are one face.</summary>
    public const float MergeIoU = 0.3f;

    private readonly DlibFaceDetector _detector = new(maxSide: int.MaxValue);
    private readonly MotionMap _motion = new();
    private List<FaceBox> _previous = [];   // the last frame's faces, scan coordinates
    private long _frame = -1;

    public bool ReadsGrey => true;

    /// <summary>How the last frame was searched (for the bench and tests).</summary>
    public StreamScanStats Last { get; private set; }

    public IReadOnlyList<FaceBox> Find(Mat bgr)
    {
        _frame++;
        using var scan = new HogScanImage(bgr);
        var image = scan.Image;
        // A new scan size leaves the map without a reference, so the frame is scanned in full and _previous replaced.
        _motion.Update(image);

        var faces = _frame % FullScanEvery == 0 || !_motion.HasReference ? null : SearchPartially(image);
        if (faces == null)
        {
            faces = _detector.Detect(image).ToList();
            _motion.SearchedAll();
            Last = new StreamScanStats(true, 1.0);
        }
        _previous = faces;
        return faces.Select(scan.ToFrame).ToList();
    }

    /// <summary>This frame's faces from the partial searches, or null where a full scan is cheaper or needed.</summary>
    private List<FaceBox>? SearchPartially(Mat image)
    {
        var size = image.Size();
        var tracked = new List<FaceBox>();
        var regions = new List<Rect>();
        foreach (var p in _previous)
        {
            // Nothing under it changed since it was last searched: the same pixels, the same face.
            if (!_motion.IsDirty(p.ToRect())) { tracked.Add(p); continue; }
            var found = TrackSearch(image, p);
            if (found.Count > 0) tracked.AddRange(found);
            else regions.Add(MotionMap.Clip(p.Scale(TrackWindow).ToRect(), size));
        }
        // A changed area may hold a new face: search it with a margin of a quarter of its size for the detector's context.
        regions.AddRange(_motion.DirtyRegions(tracked.Select(HeadZone),
            r => Math.Max(24, Math.Max(r.Width, r.Height) / 4), minCells: 4));
        regions = MotionMap.Cluster(regions);
        long area = regions.Sum(r => (long)r.Width * r.Height);
        double fraction = (double)area / ((long)size.Width * size.Height);
        if (fraction > MaxPartialFraction) return null;

        var fresh = new List<FaceBox>();
        foreach (var r in regions)
        {
            // dlib needs room for its 80 px window; a region is never smaller than that.
            var region = MotionMap.Clip(Grow(r, 96), size);
            if (region.Width < 80 || region.Height < 80) continue;
            using var view = new Mat(image, region);
            foreach (var b in _detector.Detect(view))
                fresh.Add(b with { Left = b.Left + region.X, Right = b.Right + region.X, Top = b.Top + region.Y, Bottom = b.Bottom + region.Y });
            _motion.Searched(region);
        }
        Last = new StreamScanStats(false, fraction);
        // Finds at scan resolution first: they are the finer boxes where a face was found both ways.
        var kept = new List<FaceBox>();
        foreach (var f in fresh.OrderByDescending(f => f.Score).Concat(tracked.OrderByDescending(f => f.Score)))
            if (!kept.Any(k => FaceBox.IoU(k, f) >= MergeIoU)) kept.Add(f);
        return kept;
    }

    /// <summary>A tracked face where it was at its own size, else in the wider square around it.</summary>
    private List<FaceBox> TrackSearch(Mat image, FaceBox p)
    {
        var near = WindowSearch(image, p, NearWindow, NearFaceSide, 1);
        return near.Count > 0 ? near : WindowSearch(image, p, TrackWindow, TrackFaceSide, TrackLevels);
    }

    /// <summary>Faces in the square of <paramref name="windowSides"/>× a tracked face's size around it, shrunk so the face is about <paramref name="faceSide"/> px.</summary>
    private List<FaceBox> WindowSearch(Mat image, FaceBox p, float windowSides, float faceSide, int levels)
    {
        var side = Math.Max(p.Width, p.Height);
        var half = windowSides * side / 2;
        var window = MotionMap.Clip(new FaceBox(p.CenterX - half, p.CenterY - half, p.CenterX + half, p.CenterY + half, 0).ToRect(), image.Size());
        if (window.Width < 80 || window.Height < 80) return [];
        double k = Math.Min(1.0, faceSide / side);
        using var view = new Mat(image, window);
        using var small = new Mat();
        var src = view;
        if (k < 1.0)
        {
            var s = new Size(Math.Max(1, (int)Math.Round(window.Width * k)), Math.Max(1, (int)Math.Round(window.Height * k)));
            if (s.Width < 80 || s.Height < 80) return [];
            HogScanImage.AreaShrink(view, small, s);
            src = small;
        }
        double bx = (double)window.Width / src.Width, by = (double)window.Height / src.Height;
        return _detector.Detect(src, levels)
            .Select(b => new FaceBox((float)(b.Left * bx + window.X), (float)(b.Top * by + window.Y), (float)(b.Right * bx + window.X), (float)(b.Bottom * by + window.Y), b.Score))
            .ToList();
    }

    /// <summary>The head zone (<see cref="HeadZoneWidth"/>) of a face box, in its coordinates.</summary>
    internal static Rect HeadZone(FaceBox t)
    {
        float hw = t.Width * HeadZoneWidth / 2;
        return new FaceBox(t.CenterX - hw, t.Top - HeadZoneAbove * t.Height, t.CenterX + hw, t.Bottom + HeadZoneBelow * t.Height, 0).ToRect();
    }

    private static Rect Grow(Rect r, int min)
    {
        int dx = Math.Max(0, min - r.Width + 1) / 2, dy = Math.Max(0, min - r.Height + 1) / 2;
        return new Rect(r.X - dx, r.Y - dy, r.Width + 2 * dx, r.Height + 2 * dy);
    }

    public void Dispose()
    {
        _detector.Dispose();
        _motion.Dispose();
    }
}

/// <summary>How a stream finder searched one frame: a full scan, or partial searches over this fraction of it.</summary>
public readonly record struct StreamScanStats(bool FullScan, double SearchedFraction);
