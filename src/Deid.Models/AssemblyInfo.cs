namespace Deid.Models;
