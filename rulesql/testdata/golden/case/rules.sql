-- Simple and searched CASE.
SELECT CASE color WHEN 'green' THEN 'go' WHEN 'red' THEN 'stop' ELSE 'wait' END AS action,
  CASE level WHEN 1 THEN 'low' WHEN 2.0 THEN 'mid' END AS level_name,
  CASE WHEN temp > 30 THEN 'hot' WHEN temp > 15 THEN 'mild' ELSE 'cold' END AS feel
FROM 'case/+'
