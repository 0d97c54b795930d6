using System.Text.Json;
using Spectre.Console;

namespace Deid.Bench;

/// <summary>One measured row: suite, what was measured, value and unit, plus free-form details.</summary>
public sealed record BenchRow(string Suite, string Name, double Value, string Unit, Dictionary<string, object>? Extra = null);

public sealed class BenchResults
{
    private readonly List<BenchRow> _rows = [];
    public IReadOnlyList<BenchRow> Rows => _rows;
    public void Add(BenchRow row) { lock (_rows) _rows.Add(row); }

    public void PrintTable()
    {
        var t = new Table().AddColumns("suite", "measure", "value", "unit");
        foreach (var r in _rows) t.AddRow(r.Suite, Markup.Escape(r.Name), r.Value.ToString("0.###"), r.Unit);
        AnsiConsole.Write(t);
    }

    public void WriteJson(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var doc = new
        {
            machine = new { Environment.ProcessorCount, os = Environment.OSVersion.ToString(), dotnet = Environment.Version.ToString() },
            utc = DateTime.UtcNow,
            rows = _rows,
        };
        File.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
    }
}
