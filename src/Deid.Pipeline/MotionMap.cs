using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// Which parts of a stream's scan image changed since they were last searched for faces of every size. Kept as
/// cells of <see cref="Cell"/>² scan pixels (their mean grey level); a cell is dirty when its mean moved by more than
/// <see cref="Threshold"/> against the reference, the cell as it was when last searched. The reference is only
/// advanced where a search of every face size ran, so a slow change (a fade, a slow pan) adds up until it is
/// searched, and a face can only become visible where cells change: that is what lets a stream finder skip the rest.
/// </summary>
public sealed class MotionMap : IDisposable
{
    /// <summary>Scan pixels per cell side.</summary>
    public const int Cell = 4;

    /// <summary>
    /// Mean grey change of a cell that counts as motion: above what re-encoding and sensor noise move a 4×4 mean of a
    /// still scene, far below what a face appearing does.
    /// </summary>
    public const double Threshold = 6;

    private Mat? _reference;
    private Size _referenceImage;  // the scan image size the reference was taken from
    private Size _image;           // this frame's
    private readonly Mat _current = new();
    private readonly Mat _diff = new();
    private readonly Mat _dirty = new();

    /// <summary>False until a first search, and again after the scan image changed size.</summary>
    public bool HasReference { get; private set; }

    /// <summary>Takes this frame's scan image (8-bit grey) and marks the cells that changed since last searched.</summary>
    public void Update(Mat grey)
    {
        _image = grey.Size();
        var cells = new Size((grey.Width + Cell - 1) / Cell, (grey.Height + Cell - 1) / Cell);
        CellMeans(grey, cells);
        HasReference = _reference != null && _referenceImage == _image;
        if (!HasReference) return;
        Cv2.Absdiff(_current, _reference!, _diff);
        Cv2.Threshold(_diff, _dirty, Threshold, 255, ThresholdTypes.Binary);
    }

    /// <summary>
    /// Each cell's mean, cells at the right and bottom edge over the pixels they hold. The interior by
    /// <see cref="WholeCellMeans"/>, the edge strips by OpenCV's area resampling apart: its general path (any size not
    /// a multiple of <see cref="Cell"/>) builds a weight table per pixel and cost several times as much per frame.
    /// </summary>
    private void CellMeans(Mat grey, Size cells)
    {
        int w = grey.Width / Cell * Cell, h = grey.Height / Cell * Cell;
        _current.Create(cells, MatType.CV_8UC1);
        if (w > 0 && h > 0)
        {
            using var src = new Mat(grey, new Rect(0, 0, w, h));
            using var dst = new Mat(_current, new Rect(0, 0, w / Cell, h / Cell));
            WholeCellMeans(src, dst);
        }
        if (w < grey.Width) Mean(new Rect(w, 0, grey.Width - w, h), new Rect(w / Cell, 0, 1, h / Cell));
        if (h < grey.Height) Mean(new Rect(0, h, w, grey.Height - h), new Rect(0, h / Cell, w / Cell, 1));
        if (w < grey.Width && h < grey.Height) Mean(new Rect(w, h, grey.Width - w, grey.Height - h), new Rect(w / Cell, h / Cell, 1, 1));

        void Mean(Rect from, Rect to)
        {
            if (to.Width <= 0 || to.Height <= 0) return;
            using var src = new Mat(grey, from);
            using var dst = new Mat(_current, to);
            Cv2.Resize(src, dst, to.Size, 0, 0, InterpolationFlags.Area);
        }
    }

    /// <summary>
    /// The mean of each whole <see cref="Cell"/>² block of <paramref name="grey"/> (its size a multiple of the cell)
    /// into <paramref name="means"/>, as OpenCV's whole-factor area resampling gives it: the sum of 16, times 1/16,
    /// rounded to nearest, halves to even. OpenCV vectorises that path only for a factor of 2 and adds the 16 pixels
    /// of a 4×4 block one at a time, which cost a third of a millisecond a frame at scan size; here sixteen pixels
    /// of four rows at a time become four means with two multiply-adds of adjacent lanes (written for a cell of 4).
    /// </summary>
    internal static unsafe void WholeCellMeans(Mat grey, Mat means)
    {
        int rows = means.Rows, cols = means.Cols;
        for (var cy = 0; cy < rows; cy++)
        {
            byte* r0 = (byte*)grey.Ptr(Cell * cy), d = (byte*)means.Ptr(cy);
            long step = grey.Step();
            byte* r1 = r0 + step, r2 = r1 + step, r3 = r2 + step;
            var cx = 0;
            if (Ssse3.IsSupported)
            {
                var ones8 = Vector128.Create((sbyte)1);
                var ones16 = Vector128.Create((short)1);
                for (; cx + 4 <= cols; cx += 4)
                {
                    int x = Cell * cx;
                    // Pairs of a row (at most 510), four rows of pairs (at most 2040), then pairs of pairs: block sums.
                    var pairs = Ssse3.MultiplyAddAdjacent(Vector128.Load(r0 + x), ones8) + Ssse3.MultiplyAddAdjacent(Vector128.Load(r1 + x), ones8)
                              + Ssse3.MultiplyAddAdjacent(Vector128.Load(r2 + x), ones8) + Ssse3.MultiplyAddAdjacent(Vector128.Load(r3 + x), ones8);
                    var sums = Sse2.MultiplyAddAdjacent(pairs, ones16);
                    var mean = RoundedSixteenth(sums);
                    var bytes = Sse2.PackUnsignedSaturate(Sse2.PackSignedSaturate(mean, mean), Sse2.PackSignedSaturate(mean, mean));
                    *(uint*)(d + cx) = bytes.AsUInt32().ToScalar();
                }
            }
            for (; cx < cols; cx++)
            {
                int x = Cell * cx, sum = 0;
                for (var k = 0; k < Cell; k++) sum += r0[x + k] + r1[x + k] + r2[x + k] + r3[x + k];
                d[cx] = (byte)RoundedSixteenth(sum);
            }
        }
    }

    /// <summary>sum / 16 rounded to nearest, halves to even (what OpenCV's cvRound does to sum · (1/16f)).</summary>
    private static Vector128<int> RoundedSixteenth(Vector128<int> sum) =>
        (sum + Vector128.Create(7) + ((sum >> 4) & Vector128.Create(1))) >> 4;

    /// <summary>The same for one sum.</summary>
    private static int RoundedSixteenth(int sum) => (sum + 7 + ((sum >> 4) & 1)) >> 4;

    /// <summary>Whether any cell under a scan-image rectangle changed (true without a reference).</summary>
    public bool IsDirty(Rect scan)
    {
        if (!HasReference) return true;
        var c = ToCells(scan);
        if (c.Width <= 0 || c.Height <= 0) return false;
        using var cells = new Mat(_dirty, c);
        return Cv2.CountNonZero(cells) > 0;
    }

    /// <summary>
    /// Bounding rectangles (scan pixels) of the changed areas outside <paramref name="exclude"/>, each grown by
    /// <paramref name="margin"/>(its own size) on every side, clipped to this frame's image. Components smaller than
    /// <paramref name="minCells"/> cells are noise, not a face.
    /// </summary>
    public List<Rect> DirtyRegions(IEnumerable<Rect> exclude, Func<Rect, int> margin, int minCells = 2)
    {
        var result = new List<Rect>();
        if (!HasReference) { result.Add(new Rect(0, 0, _image.Width, _image.Height)); return result; }
        using var mask = _dirty.Clone();
        foreach (var r in exclude)
        {
            var c = ToCells(r);
            if (c.Width <= 0 || c.Height <= 0) continue;
            using var cells = new Mat(mask, c);
            cells.SetTo(Scalar.All(0));
        }
        // Most frames of a talking head change only under the tracked heads: nothing is left to label.
        if (Cv2.CountNonZero(mask) == 0) return result;
        using var labels = new Mat();
        using var stats = new Mat();
        using var centroids = new Mat();
        int n = Cv2.ConnectedComponentsWithStats(mask, labels, stats, centroids, PixelConnectivity.Connectivity8);
        for (var i = 1; i < n; i++)
        {
            if (stats.At<int>(i, (int)ConnectedComponentsTypes.Area) < minCells) continue;
            var r = new Rect(stats.At<int>(i, 0) * Cell, stats.At<int>(i, 1) * Cell, stats.At<int>(i, 2) * Cell, stats.At<int>(i, 3) * Cell);
            var m = margin(r);
            result.Add(Clip(new Rect(r.X - m, r.Y - m, r.Width + 2 * m, r.Height + 2 * m), _image));
        }
        return result;
    }

    /// <summary>Marks a scan-image rectangle as searched for every face size: its cells become the reference.</summary>
    public void Searched(Rect scan)
    {
        if (!HasReference) return;
        var c = ToCells(scan);
        if (c.Width <= 0 || c.Height <= 0) return;
        using var from = new Mat(_current, c);
        using var to = new Mat(_reference!, c);
        from.CopyTo(to);
    }

    /// <summary>The whole image was searched.</summary>
    public void SearchedAll()
    {
        _reference ??= new Mat();
        _current.CopyTo(_reference);
        _referenceImage = _image;
        HasReference = true;
    }

    /// <summary>The cells a scan rectangle touches.</summary>
    private Rect ToCells(Rect scan)
    {
        int x0 = Math.Max(0, scan.X / Cell), y0 = Math.Max(0, scan.Y / Cell);
        int x1 = Math.Min(_current.Width, (scan.Right + Cell - 1) / Cell), y1 = Math.Min(_current.Height, (scan.Bottom + Cell - 1) / Cell);
        return new Rect(x0, y0, Math.Max(0, x1 - x0), Math.Max(0, y1 - y0));
    }

    /// <summary>Rectangles joined into their bounding rectangle while they overlap: one search per group instead of one per fragment.</summary>
    internal static List<Rect> Cluster(IEnumerable<Rect> rects) => Join(rects, (a, b, _) => a.IntersectsWith(b));

    /// <summary>Rectangles joined, a pair at a time, into their bounding rectangle while <paramref name="join"/>(a, b, union) says so.</summary>
    internal static List<Rect> Join(IEnumerable<Rect> rects, Func<Rect, Rect, Rect, bool> join)
    {
        var list = rects.Where(r => r.Width > 0 && r.Height > 0).ToList();
        for (var merged = true; merged;)
        {
            merged = false;
            for (var i = 0; i < list.Count && !merged; i++)
                for (var j = i + 1; j < list.Count && !merged; j++)
                {
                    var u = list[i].Union(list[j]);
                    if (join(list[i], list[j], u))
                    {
                        list[i] = u;
                        list.RemoveAt(j);
                        merged = true;
                    }
                }
        }
        return list;
    }

    internal static Rect Clip(Rect r, Size image)
    {
        int x0 = Math.Clamp(r.X, 0, image.Width), y0 = Math.Clamp(r.Y, 0, image.Height);
        int x1 = Math.Clamp(r.Right, 0, image.Width), y1 = Math.Clamp(r.Bottom, 0, image.Height);
        return new Rect(x0, y0, x1 - x0, y1 - y0);
    }

    public void Dispose()
    {
        _reference?.Dispose();
        _current.Dispose();
        _diff.Dispose();
        _dirty.Dispose();
    }
}
