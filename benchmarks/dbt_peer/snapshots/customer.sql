{% snapshot customer %}
{{ config(target_schema='main', unique_key='customer_id', strategy='check', check_cols='all',
          hard_deletes='invalidate') }}
select * from read_csv('{{ var("landing") }}/customer_{{ var("day") }}.csv', header = true,
                       all_varchar = true)
{% endsnapshot %}
