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
}
