using OpenCvSharp;

namespace Deid.Pipeline.Tests;

/// <summary>The stream finders' memory of what each part of the picture looked like when it was last searched.</summary>
public class MotionMapTests
{
    private static Mat Grey(byte level, int width = 320, int height = 240) => new(height, width, MatType.CV_8UC1, Scalar.All(level));

    /// <summary>A map whose reference is <paramref name="image"/>, searched in full.</summary>
    private static MotionMap SearchedOn(Mat image)
    {
        var map = new MotionMap();
        map.Update(image);
        map.SearchedAll();
        return map;
    }

    [Fact]
    public void WithoutAReference_EverythingIsToBeSearched()
    {
        using var map = new MotionMap();
        using var g = Grey(100);
        map.Update(g);
        Assert.False(map.HasReference);
        Assert.True(map.IsDirty(new Rect(0, 0, 8, 8)));
        Assert.Equal([new Rect(0, 0, 320, 240)], map.DirtyRegions([], _ => 0));
    }

    [Fact]
    public void AChangedPatch_IsDirtyThere_AndNowhereElse_UntilSearched()
    {
        using var a = Grey(100);
        using var map = SearchedOn(a);
        using var b = a.Clone();
        b[new Rect(200, 40, 60, 60)].SetTo(Scalar.All(200));
        map.Update(b);
        Assert.True(map.IsDirty(new Rect(210, 50, 10, 10)));
        Assert.False(map.IsDirty(new Rect(0, 0, 100, 100)));
        var region = Assert.Single(map.DirtyRegions([], _ => 0));
        Assert.True(region.Contains(new Rect(200, 40, 60, 60)), $"{region}");
        // Inside an excluded area (a tracked head) a change is not a region to search.
        Assert.Empty(map.DirtyRegions([new Rect(180, 20, 100, 100)], _ => 0));

        map.Searched(region);
        map.Update(b);
        Assert.False(map.IsDirty(new Rect(210, 50, 10, 10)));
    }

    /// <summary>A slow fade adds up against the reference (the picture when last searched), not the previous frame.</summary>
    [Fact]
    public void ASlowChange_AddsUpUntilItIsSearched()
    {
        using var a = Grey(100);
        using var map = SearchedOn(a);
        var dirtyAt = -1;
        for (var step = 1; step <= 10 && dirtyAt < 0; step++)
        {
            using var g = Grey((byte)(100 + 2 * step)); // 2 levels a frame: each frame alone is below the threshold
            map.Update(g);
            if (map.IsDirty(new Rect(0, 0, 320, 240))) dirtyAt = step;
        }
        Assert.InRange(dirtyAt, 2, 4);
    }

    /// <summary>A size that is no multiple of the cell: the part-cells at the right and bottom edge see changes too.</summary>
    [Theory]
    [InlineData(2, 0)]
    [InlineData(0, 3)]
    [InlineData(1, 1)]
    public void ChangesInTheEdgePartCells_AreSeen(int right, int bottom)
    {
        int w = 320 + right, h = 240 + bottom;
        using var a = Grey(100, w, h);
        using var map = SearchedOn(a);
        using var b = a.Clone();
        // Only the pixels beyond the last whole cell change (or the last row/column of whole cells where there are none).
        var strip = new Rect(right > 0 ? 320 : w - 4, bottom > 0 ? 240 : h - 4, right > 0 ? right : 4, bottom > 0 ? bottom : 4);
        b[strip].SetTo(Scalar.All(200));
        map.Update(b);
        Assert.True(map.IsDirty(strip));
        Assert.False(map.IsDirty(new Rect(0, 0, 300, 220)));
        var region = Assert.Single(map.DirtyRegions([], _ => 0, minCells: 1));
        Assert.True(region.Contains(strip), $"{region} should hold {strip}");
    }

    /// <summary>
    /// The cell means are OpenCV's whole-factor area resampling, value for value: on noise (every sum), on a picture
    /// of exact halves (sums ≡ 8 mod 16, where rounding to even and rounding up part), and at widths that leave a
    /// vector's worth of cells or less over.
    /// </summary>
    [Theory]
    [InlineData(592, 592, 1)]
    [InlineData(16, 8, 2)]
    [InlineData(20, 4, 3)]
    [InlineData(4, 12, 4)]
    [InlineData(836, 472, 5)]
    public void CellMeans_AreOpenCvsAreaMeans(int width, int height, int seed)
    {
        var rng = new Random(seed);
        using var noise = new Mat(height, width, MatType.CV_8UC1);
        var bytes = new byte[width * height];
        rng.NextBytes(bytes);
        System.Runtime.InteropServices.Marshal.Copy(bytes, 0, noise.Data, bytes.Length);
        // Halves: each 4×4 block sums to 16q + 8 (one pixel of the block one above the rest, q from the noise).
        using var halves = new Mat(height, width, MatType.CV_8UC1);
        for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
            {
                int q = bytes[(y / 4 * 4) * width + x / 4 * 4] % 254;
                halves.Set(y, x, (byte)(q + ((x % 4 == 0 && y % 4 == 0) ? 8 : 0)));
            }
        foreach (var image in new[] { noise, halves })
        {
            using var expected = new Mat();
            Cv2.Resize(image, expected, new Size(width / 4, height / 4), 0, 0, InterpolationFlags.Area);
            using var actual = new Mat(height / 4, width / 4, MatType.CV_8UC1, Scalar.All(0));
            MotionMap.WholeCellMeans(image, actual);
            using var diff = new Mat();
            Cv2.Absdiff(expected, actual, diff);
            Assert.Equal(0, Cv2.CountNonZero(diff));
        }
    }

    /// <summary>The same through a view into a larger picture (a row step that is not the width).</summary>
    [Fact]
    public void CellMeans_OfAView_AreOpenCvsAreaMeans()
    {
        using var whole = new Mat(100, 120, MatType.CV_8UC1);
        var bytes = new byte[100 * 120];
        new Random(6).NextBytes(bytes);
        System.Runtime.InteropServices.Marshal.Copy(bytes, 0, whole.Data, bytes.Length);
        using var view = new Mat(whole, new Rect(8, 4, 64, 40));
        using var expected = new Mat();
        Cv2.Resize(view, expected, new Size(16, 10), 0, 0, InterpolationFlags.Area);
        using var actual = new Mat(10, 16, MatType.CV_8UC1, Scalar.All(0));
        MotionMap.WholeCellMeans(view, actual);
        using var diff = new Mat();
        Cv2.Absdiff(expected, actual, diff);
        Assert.Equal(0, Cv2.CountNonZero(diff));
    }
}
